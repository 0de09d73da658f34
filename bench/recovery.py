#!/usr/bin/python3
"""Recovery time: how long a broker takes to come back with a large durable state.

Fills a broker with RETAINED retained messages (64-byte payloads, QoS 1, distinct topics)
and SESSIONS persistent sessions (MQTT 3.1.1 clean session 0, one subscription each), stops
it cleanly, starts it again and measures the time from the start to the moment it accepts
MQTT connections, and, for moatd, the store's own load time (its `store_loaded ... ms=`
line). The same state is made in Debian's mosquitto with `persistence true` (its snapshot
is written at the clean stop), so the two are side by side.

    bench/recovery.py [--retained N] [--sessions N] [--broker moat|mosquitto|both]

Writes are paced by the brokers' PUBACKs (a window of 1000 QoS 1 publishes in flight), so
nothing is dropped on the way in. Checks after the restart: a subscriber to '#'-filtered
topics gets every retained message back (counted), and a sample of sessions reports
session present. Results: a table on stdout and bench/results/recovery.csv.
"""
import argparse
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MOATD = os.environ.get("MOATD", os.path.join(ROOT, "build", "moatd"))
MOAT = os.environ.get("MOAT", os.path.join(ROOT, "build", "moat"))
MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")

sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from moatlib import free_port, mqtt_str, packet  # noqa: E402  (the tests' raw MQTT helpers)
from moatlib import connect_packet as _connect_packet  # noqa: E402


def connect(cid, clean=True, keepalive=600):
    return _connect_packet(cid, 4, clean, keepalive)


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = b""

    def recv_packets(self):
        """Reads what is there (at least one packet); yields (type, body)."""
        data = self.s.recv(1 << 20)
        if not data:
            raise ConnectionError("closed")
        self.buf += data
        out = []
        while True:
            if len(self.buf) < 2:
                break
            n, mult, i = 0, 1, 1
            while True:
                if i >= len(self.buf):
                    return out
                b = self.buf[i]
                n += (b & 127) * mult
                mult *= 128
                i += 1
                if not b & 128:
                    break
            if len(self.buf) < i + n:
                break
            out.append((self.buf[0] >> 4, self.buf[i:i + n]))
            self.buf = self.buf[i + n:]
        return out

    def connack(self):
        self.s.sendall(b"")
        while True:
            for t, body in self.recv_packets():
                if t == 2:
                    return body[0] & 1, body[1]


def wait_ready(port, proc, timeout=600):
    """Seconds until a CONNECT gets its CONNACK: a listening socket is not enough (moatd
    opens its listeners before it loads the store; the kernel queues connections)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError("broker exited at start")
        try:
            c = Conn(port)
            c.s.settimeout(timeout)
            c.s.sendall(connect("ready-probe"))
            c.connack()
            c.s.close()
            return time.time() - t0
        except OSError:
            time.sleep(0.005)
    raise RuntimeError("broker did not answer")


def fill_retained(port, n, window=1000):
    c = Conn(port)
    c.s.sendall(connect("filler"))
    c.connack()
    payload = b"x" * 64
    sent = acked = 0
    pid = 0
    while acked < n:
        batch = []
        while sent < n and sent - acked < window:
            pid = pid % 65535 + 1
            topic = "r/%d/%d" % (sent // 1000, sent % 1000)
            batch.append(packet(0x33, mqtt_str(topic) + struct.pack("!H", pid) + payload))
            sent += 1
        if batch:
            c.s.sendall(b"".join(batch))
        for t, body in c.recv_packets():
            if t == 4:
                acked += 1
    c.s.sendall(b"\xe0\x00")
    c.s.close()


def fill_sessions(port, n, parallel=200):
    """n persistent sessions, each subscribed to s/<i>; parallel connections at once."""
    i = 0
    while i < n:
        conns = []
        for k in range(min(parallel, n - i)):
            c = Conn(port)
            cid = "sess-%d" % (i + k)
            sub = packet(0x82, struct.pack("!H", 1) + mqtt_str("s/%d" % (i + k)) + b"\x01")
            c.s.sendall(connect(cid, clean=False) + sub)
            conns.append(c)
        for c in conns:
            got_suback = False
            while not got_suback:
                for t, body in c.recv_packets():
                    got_suback |= t == 9
            c.s.sendall(b"\xe0\x00")
            c.s.close()
        i += len(conns)


def count_retained(port, expect, timeout=600):
    """Distinct retained topics a QoS 1 subscription to r/# gets back (QoS 1 and acked, so
    that none is dropped for a slow reader, as QoS 0 may be)."""
    c = Conn(port)
    c.s.sendall(connect("counter"))
    c.connack()
    c.s.sendall(packet(0x82, struct.pack("!H", 1) + mqtt_str("r/#") + b"\x01"))
    topics = set()
    t0 = time.time()
    c.s.settimeout(10)
    while len(topics) < expect and time.time() - t0 < timeout:
        try:
            acks = []
            for t, body in c.recv_packets():
                if t == 3:
                    n = struct.unpack("!H", body[:2])[0]
                    topics.add(body[2:2 + n])
                    acks.append(packet(0x40, body[2 + n:4 + n]))
            if acks:
                c.s.sendall(b"".join(acks))
        except socket.timeout:
            break
    c.s.close()
    return len(topics)


def sessions_present(port, n, sample=100):
    present = 0
    step = max(1, n // sample)
    checked = 0
    for i in range(0, n, step):
        c = Conn(port)
        c.s.sendall(connect("sess-%d" % i, clean=False))
        sp, rc = c.connack()
        present += sp == 1 and rc == 0
        c.s.sendall(b"\xe0\x00")
        c.s.close()
        checked += 1
    return present, checked


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


class Moat:
    name = "moatd"

    def __init__(self, work, sync):
        self.port = free_port()
        self.work = work
        self.log = os.path.join(work, "moatd.log")
        key = os.path.join(work, "store.key")
        subprocess.run([MOAT, "store", "keygen", key], check=True, capture_output=True)
        self.conf = os.path.join(work, "moat.conf")
        with open(self.conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    "persistence_location %s/store\npersistence_key_file %s\n"
                    "persistence_sync %s\nsys_interval 0\nmax_queued_messages 0\n"
                    "max_inflight_messages 1000\nmax_connection_rate 0\n"
                    % (self.port, work, key, sync))

    def start(self):
        self.proc = subprocess.Popen([MOATD, "-c", self.conf], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)

    def load_ms(self):
        with open(self.log, errors="replace") as f:
            m = re.findall(r"store_loaded .* ms=(\d+)", f.read())
        return int(m[-1]) if m else None


class Mosquitto:
    name = "mosquitto"

    def __init__(self, work, sync):
        self.port = free_port()
        self.work = work
        self.log = os.path.join(work, "mosquitto.log")
        self.conf = os.path.join(work, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    "persistence_location %s/\nautosave_interval 0\nsys_interval 0\n"
                    "max_queued_messages 0\nmax_inflight_messages 1000\n%s"
                    % (self.port, work, "user root\n" if os.geteuid() == 0 else ""))

    def start(self):
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)

    def load_ms(self):
        return None


def run(kind, retained, sessions, sync):
    work = tempfile.mkdtemp(prefix="moat-recovery-")
    b = (Moat if kind == "moat" else Mosquitto)(work, sync)
    b.start()
    wait_ready(b.port, b.proc)
    t0 = time.time()
    fill_retained(b.port, retained)
    t_ret = time.time() - t0
    t0 = time.time()
    fill_sessions(b.port, sessions)
    t_sess = time.time() - t0
    b.proc.send_signal(signal.SIGTERM)
    t0 = time.time()
    b.proc.wait(600)
    t_stop = time.time() - t0
    b.start()
    t_up = wait_ready(b.port, b.proc)
    cpu = cpu_seconds(b.proc.pid)
    rss = rss_mb(b.proc.pid)
    got = count_retained(b.port, retained)
    present, checked = sessions_present(b.port, sessions)
    b.proc.send_signal(signal.SIGTERM)
    b.proc.wait(600)
    load_ms = b.load_ms()
    subprocess.run(["rm", "-rf", work])
    return {"broker": b.name, "sync": sync if kind == "moat" else "snapshot",
            "retained": retained, "sessions": sessions,
            "fill_retained_s": round(t_ret, 2), "fill_sessions_s": round(t_sess, 2),
            "stop_s": round(t_stop, 2), "ready_s": round(t_up, 2),
            "load_ms": load_ms, "cpu_at_ready_s": round(cpu, 2), "rss_mb": round(rss, 1),
            "retained_back": got, "sessions_present": "%d/%d" % (present, checked)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--retained", type=int, default=1000000)
    ap.add_argument("--sessions", type=int, default=100000)
    ap.add_argument("--broker", choices=("moat", "mosquitto", "both"), default="both")
    ap.add_argument("--sync", default="batch", help="moatd's persistence_sync")
    a = ap.parse_args()
    rows = []
    for kind in (("moat", "mosquitto") if a.broker == "both" else (a.broker,)):
        r = run(kind, a.retained, a.sessions, a.sync)
        rows.append(r)
        print(" ".join("%s=%s" % kv for kv in r.items()), flush=True)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out = os.path.join(HERE, "results", "recovery.csv")
    with open(out, "w") as f:
        f.write(",".join(rows[0]) + "\n")
        for r in rows:
            f.write(",".join(str(v) for v in r.values()) + "\n")
    print("\n| broker | sync | retained | sessions | fill retained s | fill sessions s | stop s | "
          "ready s (restart to first CONNACK) | store load ms | CPU s at ready | RSS MB | "
          "retained back | sessions present |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %(broker)s | %(sync)s | %(retained)d | %(sessions)d | %(fill_retained_s)s | "
              "%(fill_sessions_s)s | %(stop_s)s | %(ready_s)s | %(load_ms)s | %(cpu_at_ready_s)s | "
              "%(rss_mb)s | %(retained_back)d | %(sessions_present)s |" % r)
    print("\nCSV: %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
