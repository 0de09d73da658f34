"""The admin API through `moat ctl`, against a running moatd with real clients attached.

Covers:
  - the socket: on by default in the store's directory with persistence (found by
    `moat ctl -c CONFIG`), admin_socket PATH, off without persistence; mode 0600; a caller
    the file mode keeps out cannot reach it;
  - status; kick by client id (the MQTT 5 client sees DISCONNECT 0x98, the audit log has the
    admin action and the kick);
  - ban and unban by client id (a connected client is dropped and refused with CONNACK 0x8A
    until unbanned), by address and network (refused at accept), the allow-list's refusal,
    bad requests; the bans list;
  - lockdown on/off from ctl (new clients refused with 0x89, connected ones kept), kept
    across a reload;
  - reload and shutdown;
  - backup taken while publishers run: restored with `moatd --restore` it holds every
    retained message acknowledged before the backup began, and the persistent session;
  - rekey online under load: the store is re-encrypted, the key file replaced, every
    message kept; the old key no longer opens the store; rotate (data key only);
  - every action is an "admin" event in the audit log, with the caller's uid and pid.
"""
import json
import os
import shutil
import socket
import stat
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from moatlib import MOAT, MOATD, Broker, connect5_packet, restartable, wait_for
from sentinellib import RawFrom, closed_at_accept, first_reply, uniq
from test_persistence import client, keygen, payloads, stop, subscribe
from tls_pki import pki  # noqa: F401


def ctl(sock, *args, expect=0):
    r = subprocess.run([MOAT, "ctl", "-s", str(sock), "--json"] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == expect, "moat ctl %s: rc %d\n%s%s" % (
        " ".join(map(str, args)), r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else r


def audit_events(path, kind=None):
    try:
        with open(path) as f:
            lines = [json.loads(ln) for ln in f if ln.strip()]
    except FileNotFoundError:
        return []
    return [e for e in lines if kind is None or e.get("kind") == kind]


class Admin:
    """moatd with persistence, an audit log and the admin socket in its store directory."""

    def __init__(self, tmp, extra=""):
        self.tmp = tmp
        self.dir = tmp / "store"
        self.key = keygen(tmp / "store.key")
        self.audit = tmp / "audit.log"
        self.b = Broker(config="persistence true\npersistence_location %s\n"
                               "persistence_key_file %s\naudit_log %s\n%s"
                               % (self.dir, self.key, self.audit, extra))
        self.port = self.b.port
        self.sock = self.dir / "admin.sock"
        self.wait_socket()

    def wait_socket(self):
        # the MQTT port listens a moment before the admin socket is made
        assert wait_for(lambda: os.path.exists(self.sock), 10), self.b.output()[-2000:]

    def ctl(self, *args, expect=0):
        return ctl(self.sock, *args, expect=expect)

    def admin_events(self, what, timeout=5):
        """The admin events whose reason has what; waits for one to be there (the sentinel
        writes the audit log a few milliseconds after an event: it gathers them)."""
        def found():
            return [e for e in audit_events(self.audit, "admin") if what in e.get("reason", "")]
        wait_for(found, timeout)
        return found()

    def stop(self):
        assert self.b.stop() == 0, self.b.output()[-3000:]
        self.b.check_clean()


@pytest.fixture
def admin(tmp_path):
    yield from restartable(lambda extra="": Admin(tmp_path, extra))


def free_port_for_test():
    from moatlib import free_port
    return free_port()


def v5_client(port, cid):
    """A paho MQTT 5 client that records the reason of a DISCONNECT from the server."""
    c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5)
    c.reasons = []
    c.on_disconnect = lambda cl, u, rc, props=None: c.reasons.append(
        getattr(rc, "value", rc))
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert wait_for(c.is_connected, 5)
    return c


def v5_connack(port, cid, src="127.0.0.1"):
    r = RawFrom(port, src)
    try:
        r.send(connect5_packet(cid))
        p = first_reply(r)
        return None if p is None else p[1][1]
    finally:
        r.close()


def test_socket_default_place_mode_and_status(admin, tmp_path):
    a = admin()
    st = os.stat(a.sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    s = a.ctl("status")
    assert s["version"] and s["pid"] == a.b.proc.pid
    assert s["store"]["key_generation"] == 1 and s["lockdown"] is False
    c = client(a.port, "dev-1", 4)
    assert wait_for(lambda: a.ctl("status")["clients_connected"] == 1, 5)
    stop(c)
    # found through the config file
    r = subprocess.run([MOAT, "ctl", "-c", a.b.conf, "--json", "status"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and json.loads(r.stdout)["pid"] == a.b.proc.pid, r.stderr
    # a caller the socket's mode keeps out (not root, not moatd's user)
    if os.geteuid() == 0 and shutil.which("setpriv"):
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            MOAT, "ctl", "-s", str(a.sock), "status"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 3, r.stdout + r.stderr
    a.stop()
    assert not os.path.exists(a.sock)


def test_socket_explicit_and_off(tmp_path):
    sock = tmp_path / "ctl.sock"
    b = Broker(config="admin_socket %s\n" % sock)
    try:
        assert wait_for(lambda: os.path.exists(sock), 10)
        assert ctl(sock, "status")["store"] is None
    finally:
        assert b.stop() == 0
    b = Broker(config="")
    try:
        r = subprocess.run([MOAT, "ctl", "-c", b.conf, "status"], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode in (2, 3), r.stdout + r.stderr
    finally:
        assert b.stop() == 0


def test_kick_by_client_id(admin):
    a = admin()
    c = v5_client(a.port, "plc-7")
    other = v5_client(a.port, "plc-8")
    r = a.ctl("kick", "--client-id", "plc-7")
    assert r["client_id"] == "plc-7"
    assert wait_for(lambda: c.reasons, 5), "no disconnect"
    assert c.reasons[0] == 0x98
    time.sleep(0.3)
    assert other.is_connected()
    assert wait_for(lambda: audit_events(a.audit, "kicked"), 5)
    kicked = audit_events(a.audit, "kicked")
    assert kicked[0]["client_id"] == "plc-7"
    ev = a.admin_events("kick client_id plc-7")
    assert ev and "uid=%d" % os.geteuid() in ev[0]["addr"], audit_events(a.audit, "admin")
    for x in (c, other):
        x.loop_stop()
        x.disconnect()
    # bad requests: no selector, two selectors, a cidr
    a.ctl("kick", expect=1)
    r = subprocess.run([MOAT, "ctl", "-s", str(a.sock), "kick", "--client-id", "x",
                        "--username", "y"], capture_output=True, text=True)
    assert r.returncode == 1 and "exactly one" in r.stderr


def test_ban_and_unban_client_id(admin):
    a = admin()
    c = v5_client(a.port, "rogue-1")
    r = a.ctl("ban", "--client-id", "rogue-1", "--duration", "600", "--reason", "incident 42")
    assert r["client_id"] == "rogue-1" and r["seconds"] == 600
    assert wait_for(lambda: c.reasons, 5), "the banned client stayed connected"
    c.loop_stop()
    assert v5_connack(a.port, "rogue-1") == 0x8A  # banned
    bans = a.ctl("bans")["bans"]
    mine = [x for x in bans if x["key"] == "rogue-1"]
    assert mine and mine[0]["kind"] == "client_id" and 590 <= mine[0]["seconds_left"] <= 600
    assert "incident 42" in mine[0]["reason"]
    a.ctl("unban", "--client-id", "rogue-1")
    assert v5_connack(a.port, "rogue-1") == 0
    r = a.ctl("unban", "--client-id", "rogue-1", expect=1)
    assert "no such ban" in r.stderr
    assert a.admin_events("ban client_id rogue-1") and a.admin_events("unban client_id rogue-1")
    # refusals: bad duration, bad network, the allow-list (loopback by default)
    assert "duration" in a.ctl("ban", "--client-id", "x", "--duration", "-1", expect=1).stderr
    assert "cidr" in a.ctl("ban", "--cidr", "10.0.0.1", expect=1).stderr
    assert "allow-list" in a.ctl("ban", "--address", "127.0.0.1", expect=1).stderr


def test_ban_address_and_network(admin):
    a = admin("sentinel_allow none\n")
    c = client(a.port, "from-2", 4, persistent=False, bind_address="127.0.0.2")
    a.ctl("ban", "--address", "127.0.0.2", "--duration", "60")
    assert wait_for(lambda: not c.is_connected(), 5)
    stop(c)
    assert closed_at_accept(a.port, "127.0.0.2")
    assert v5_connack(a.port, uniq("ok"), "127.0.0.3") == 0
    a.ctl("ban", "--cidr", "127.0.0.0/30")
    assert closed_at_accept(a.port, "127.0.0.3")
    assert v5_connack(a.port, uniq("ok"), "127.0.0.5") == 0
    a.ctl("unban", "--cidr", "127.0.0.0/30")
    assert v5_connack(a.port, uniq("ok"), "127.0.0.3") == 0
    # the bans are saved with the store: they hold after a restart
    a.stop()
    a.b.start()
    a.wait_socket()
    assert closed_at_accept(a.port, "127.0.0.2")


def test_lockdown_from_ctl_survives_reload(admin):
    a = admin("sentinel_allow 127.0.0.1\n")
    inside = v5_client(a.port, "inside")
    assert a.ctl("lockdown", "on")["lockdown"] is True
    assert v5_connack(a.port, uniq("new"), "127.0.0.2") == 0x89
    assert inside.is_connected()
    a.ctl("reload")
    assert wait_for(lambda: audit_events(a.audit, "reload"), 5)
    time.sleep(0.3)
    assert v5_connack(a.port, uniq("new"), "127.0.0.2") == 0x89
    assert a.ctl("status")["lockdown"] is True
    a.ctl("lockdown", "off")
    assert v5_connack(a.port, uniq("new"), "127.0.0.2") == 0
    # the sentinel writes the audit log a few milliseconds later (it gathers events)
    assert wait_for(lambda: [e["reason"] for e in audit_events(a.audit, "lockdown")] ==
                    ["on (admin)", "off (admin)"], 5), audit_events(a.audit, "lockdown")
    inside.loop_stop()
    inside.disconnect()
    a.ctl("lockdown", "maybe", expect=1)


def test_shutdown_from_ctl(admin):
    a = admin()
    r = a.ctl("shutdown")
    assert r["result"] == "stopping"
    a.b.proc.wait(15)
    assert a.b.proc.returncode == 0
    assert a.admin_events("shutdown")


class Load:
    """Publishers sending retained QoS 1 messages on numbered topics until stopped (at most
    300 each, about 100/s: a reader gets them all within max_queued_messages); acked[t] is
    the time topic t's PUBACK arrived."""

    def __init__(self, port, n_pubs=2):
        self.acked = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(port, k)) for k in range(n_pubs)]
        for t in self.threads:
            t.start()

    def run(self, port, k):
        c = client(port, "loader-%d" % k, 4, persistent=False)
        i = 0
        while not self.stopping.is_set() and i < 300:
            time.sleep(0.01)
            topic = "load/%d/%d" % (k, i)
            info = c.publish(topic, b"v-" + topic.encode(), qos=1, retain=True)
            info.wait_for_publish(10)
            with self.lock:
                self.acked[topic] = time.time()
            i += 1
        stop(c)

    def finish(self):
        self.stopping.set()
        for t in self.threads:
            t.join(30)


def retained_topics(port):
    c = client(port, uniq("reader"), 4, persistent=False)
    subscribe(c, "load/#", 1)
    n = -1
    while True:  # until the retained messages stop coming
        time.sleep(0.5)
        with c.lock:
            got = {t for t, p, q in c.got}
        if len(got) == n:
            break
        n = len(got)
    stop(c)
    return got


def test_backup_under_load_restores(admin, tmp_path):
    a = admin()
    keeper = client(a.port, "keeper", 4)
    subscribe(keeper, "orders/#", 1)
    stop(keeper)
    load = Load(a.port)
    time.sleep(1.0)
    t0 = time.time()
    backup = tmp_path / "backups" / "moat-backup.db"
    backup.parent.mkdir()
    r = a.ctl("backup", backup)
    assert r["file"] == str(backup)
    time.sleep(0.5)
    load.finish()
    before = {t for t, at in load.acked.items() if at < t0}
    assert len(before) > 20, len(before)
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    # no plaintext in the copy, and it never replaces a file unless asked
    assert b"load/0/" not in backup.read_bytes()
    assert "exists" in a.ctl("backup", backup, expect=1).stderr
    a.ctl("backup", backup, "--replace", "1")
    assert a.admin_events("backup to %s: done" % backup)
    assert "live store" in a.ctl("backup", a.dir / "moat.db", expect=1).stderr
    a.stop()
    # restore the copy into a new directory, with the same key
    restored = Broker(config="persistence true\npersistence_location %s\n"
                             "persistence_key_file %s\n" % (tmp_path / "restored", a.key),
                      args=["--restore", str(backup)])
    try:
        got = retained_topics(restored.port)
        assert before <= got, "lost %d retained messages" % len(before - got)
        assert got <= set(load.acked)
        c = client(restored.port, "keeper", 4)
        pub = client(restored.port, uniq("p"), 4, persistent=False)
        pub.publish("orders/1", b"after-restore", qos=1).wait_for_publish(5)
        assert wait_for(lambda: b"after-restore" in payloads(c), 5), "the session was lost"
        stop(c, pub)
    finally:
        assert restored.stop() == 0
        restored.check_clean()


def test_rekey_online_under_load(admin, tmp_path):
    a = admin()
    keeper = client(a.port, "keeper", 4)
    subscribe(keeper, "orders/#", 1)
    stop(keeper)
    load = Load(a.port)
    pub = client(a.port, uniq("p"), 4, persistent=False)
    for i in range(50):
        pub.publish("orders/%d" % i, b"order-%d" % i, qos=1).wait_for_publish(5)
    stop(pub)
    time.sleep(1.0)
    old = open(a.key).read()
    old_copy = tmp_path / "old.key"
    shutil.copy(a.key, old_copy)
    os.chmod(old_copy, 0o600)
    new = keygen(tmp_path / "new.key")
    r = a.ctl("rekey", new)
    assert r["key_generation"] == 2
    r = a.ctl("rotate")
    assert r["key_generation"] == 3
    time.sleep(0.5)
    load.finish()
    assert open(a.key).read() == open(new).read() != old
    assert not os.path.exists(a.key + ".next")
    assert a.admin_events("store rekey to %s: done" % new)
    a.stop()
    r = subprocess.run([MOAT, "store", "check", a.dir, old_copy], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "the key does not open" in r.stderr
    r = subprocess.run([MOAT, "store", "check", a.dir, a.key], capture_output=True, text=True)
    assert r.returncode == 0 and ", 0 damaged" in r.stdout and "damaged" not in \
        r.stdout.replace(", 0 damaged", ""), r.stdout
    a.b.start()
    got = retained_topics(a.port)
    assert set(load.acked) <= got, "lost %d retained messages" % len(set(load.acked) - got)
    c = client(a.port, "keeper", 4)
    assert wait_for(lambda: len(payloads(c)) == 50, 5), len(payloads(c))
    stop(c)
    # refusals: a key file others may read; persistence off has no store
    bad = keygen(tmp_path / "bad.key")
    os.chmod(bad, 0o644)
    assert "chmod 600" in a.ctl("rekey", bad, expect=1).stderr


def test_clients_list_and_detail(admin):
    a = admin()
    sub = v5_client(a.port, "hmi-1")
    done = threading.Event()
    sub.on_subscribe = lambda *x: done.set()
    sub.subscribe([("plant/+/temp", 1), ("alarms/#", 2)])
    assert done.wait(5)
    pub = client(a.port, "rtu-9", 4, persistent=False)
    for i in range(5):
        pub.publish("plant/3/temp", b"21.%d" % i, qos=1).wait_for_publish(5)
    time.sleep(0.3)
    lst = a.ctl("clients")
    assert lst["total"] == 2 and lst["truncated"] is False
    by_id = {c["client_id"]: c for c in lst["clients"]}
    assert by_id["hmi-1"]["protocol"] == "5.0" and by_id["rtu-9"]["protocol"] == "3.1.1"
    assert by_id["rtu-9"]["publish_in"] == 5 and by_id["hmi-1"]["publish_out"] == 5
    assert by_id["hmi-1"]["subscriptions"] == 2
    assert by_id["rtu-9"]["bytes_in"] > 5 * len("plant/3/temp")
    assert by_id["hmi-1"]["address"].startswith("127.0.0.1:")
    assert by_id["rtu-9"]["auth_method"] == "anonymous"
    assert 0 <= by_id["rtu-9"]["trust_address"] <= 100
    assert 0 <= by_id["rtu-9"]["trust_client_id"] <= 100
    one = a.ctl("client", "hmi-1")
    assert sorted((s["filter"], s["qos"]) for s in one["subscriptions"]) == \
        [("alarms/#", 2), ("plant/+/temp", 1)]
    r = a.ctl("client", "nobody", expect=1)
    assert "no client connected" in r.stderr
    # limit and filters
    r = subprocess.run([MOAT, "ctl", "-s", str(a.sock), "--json", "clients"],
                       capture_output=True, text=True)
    assert json.loads(r.stdout)["total"] == 2
    stop(pub)
    sub.loop_stop()
    sub.disconnect()


def test_inventory_and_flows(admin):
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    a = admin()
    hmi = v5_client(a.port, "hmi")
    done = threading.Event()
    hmi.on_subscribe = lambda *x: done.set()
    hmi.subscribe("plant/#", 1)
    assert done.wait(5)
    logger = v5_client(a.port, "logger")
    done.clear()
    logger.on_subscribe = lambda *x: done.set()
    logger.subscribe("$share/g/plant/+/temp", 0)
    assert done.wait(5)
    # a device that says what it is (MQTT 5 CONNECT user properties)
    rtu = mqtt.Client(client_id="rtu-1", protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.UserProperty = [("model", 'PLC "X9"'), ("fw", "1.2.3")]
    rtu.connect("127.0.0.1", a.port, properties=props)
    rtu.loop_start()
    assert wait_for(rtu.is_connected, 5)
    for i in range(7):
        rtu.publish("plant/1/temp", b"%d" % i, qos=1).wait_for_publish(5)
    for i in range(3):
        rtu.publish("plant/1/pressure", b"%d" % i, qos=1).wait_for_publish(5)
    old = client(a.port, "retired-9", 4, persistent=False)
    stop(old)
    time.sleep(0.3)

    inv = {d["client_id"]: d for d in a.ctl("inventory")["devices"]}
    assert set(inv) >= {"hmi", "logger", "rtu-1", "retired-9"}
    assert inv["rtu-1"]["software"] == {"model": 'PLC "X9"', "fw": "1.2.3"}
    assert inv["rtu-1"]["protocols"] == ["5.0"] and inv["rtu-1"]["online"] is True
    assert inv["retired-9"]["online"] is False and inv["retired-9"]["protocols"] == ["3.1.1"]
    assert inv["retired-9"]["addresses"] == ["127.0.0.1"]
    online = {d["client_id"] for d in a.ctl("inventory", "--online", "1")["devices"]}
    assert "retired-9" not in online and "rtu-1" in online

    fl = a.ctl("flows")
    pubs = {(p["client_id"], p["topic"]): p["messages"] for p in fl["publishers"]}
    assert pubs == {("rtu-1", "plant/1/temp"): 7, ("rtu-1", "plant/1/pressure"): 3}
    edges = sorted((e["from"], e["topic"], e["filter"], e["to"], e["messages"])
                   for e in fl["flows"])
    assert edges == [("rtu-1", "plant/1/pressure", "plant/#", "hmi", 3),
                     ("rtu-1", "plant/1/temp", "$share/g/plant/+/temp", "logger", 7),
                     ("rtu-1", "plant/1/temp", "plant/#", "hmi", 7)]
    r = subprocess.run([MOAT, "ctl", "-s", str(a.sock), "flows", "--format", "dot"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("digraph moat_flows {")
    assert '"client rtu-1" -> "topic plant/1/temp" [label="7 msgs"];' in r.stdout
    assert '"topic plant/1/temp" -> "client logger" [label="$share/g/plant/+/temp"];' in r.stdout
    if shutil.which("dot"):
        d = subprocess.run(["dot", "-Tsvg"], input=r.stdout, capture_output=True, text=True)
        assert d.returncode == 0, d.stderr
    assert "format" in a.ctl("flows", "--format", "png", expect=1).stderr
    for c in (hmi, logger, rtu):
        c.loop_stop()
        c.disconnect()


def test_kick_every_session_of_a_certificate(tmp_path, pki):
    """Revoking a device's certificate at the broker: every session it holds goes at once
    (and the other device's stays); the inventory shows the certificate subject."""
    from test_tls import mtls_conf, paho
    sock = tmp_path / "a.sock"
    b = Broker(config=mtls_conf(pki) + "admin_socket %s\n" % sock, anonymous=False)
    try:
        assert wait_for(lambda: os.path.exists(sock), 10)
        tls = {"ca_certs": pki.ca, "certfile": pki.dev1.cert, "keyfile": pki.dev1.key}
        d1a, d1b = paho(b.port, tls, client_id="dev1-a"), paho(b.port, tls, client_id="dev1-b")
        d2 = paho(b.port, {"ca_certs": pki.ca, "certfile": pki.dev2.cert,
                           "keyfile": pki.dev2.key}, client_id="dev2-a")
        for c in (d1a, d1b, d2):
            c.connect()
        lst = {c["client_id"]: c for c in ctl(sock, "clients")["clients"]}
        assert "CN=device-1" in lst["dev1-a"]["certificate_subject"]
        assert lst["dev1-a"]["tls_version"].startswith("TLSv1.")
        assert lst["dev1-a"]["auth_method"] == "certificate"
        ctl(sock, "kick", "--identity", "device-1")
        assert wait_for(lambda: d1a.disconnects and d1b.disconnects, 5)
        assert d1a.disconnects[0][0] == 0x98 or \
            getattr(d1a.disconnects[0][0], "value", None) == 0x98, d1a.disconnects
        time.sleep(0.3)
        assert not d2.disconnects
        inv = {d["client_id"]: d for d in ctl(sock, "inventory")["devices"]}
        assert "CN=device-1" in inv["dev1-a"]["identity"]
        d2.c.disconnect()
    finally:
        assert b.stop() == 0
        b.check_clean()


def test_block_a_compromised_channel(admin):
    """Commands queued for an offline PLC on a channel found compromised are not delivered
    once the channel is blocked; new publishes are refused (0x87 for MQTT 5, dropped for
    3.1.1); other channels go on; unblocking opens it again."""
    from moatlib import raw_session
    a = admin()
    plc = client(a.port, "plc-1", 4)
    subscribe(plc, "cmd/#", 1)
    stop(plc)
    pub = client(a.port, uniq("ops"), 4, persistent=False)
    for i in range(3):
        pub.publish("cmd/valve/open", b"rogue-%d" % i, qos=1).wait_for_publish(5)
    pub.publish("cmd/pump/rate", b"fine", qos=1).wait_for_publish(5)
    r = a.ctl("block", "cmd/valve/#")
    assert r["blocked"] == "cmd/valve/#"
    assert a.ctl("blocks")["blocked"] == ["cmd/valve/#"]
    assert "already" in a.ctl("block", "cmd/valve/#", expect=1).stderr
    assert "not a valid" in a.ctl("block", "a/#/b", expect=1).stderr
    # the PLC comes back: only the unblocked command arrives
    plc = client(a.port, "plc-1", 4)
    assert wait_for(lambda: b"fine" in payloads(plc), 5)
    time.sleep(0.5)
    assert [p for p in payloads(plc) if p.startswith(b"rogue")] == []
    # a new publish to the blocked channel: MQTT 5 gets 0x87; 3.1.1 is dropped
    s5 = raw_session(a.port, 5, uniq("v5"))
    assert s5.publish("cmd/valve/open", b"again", 1, pid=7) == 0x87
    denied = [e for e in audit_events(a.audit, "acl_denied") if e.get("topic") == "cmd/valve/open"]
    assert wait_for(lambda: [e for e in audit_events(a.audit, "acl_denied")
                             if "blocked by an administrator" in e.get("reason", "")], 5), denied
    pub.publish("cmd/valve/close", b"dropped", qos=1).wait_for_publish(5)
    time.sleep(0.5)
    assert b"dropped" not in payloads(plc) and b"again" not in payloads(plc)
    assert a.admin_events("block cmd/valve/#: done")
    a.ctl("unblock", "cmd/valve/#")
    assert a.ctl("blocks")["blocked"] == []
    assert "not blocked" in a.ctl("unblock", "cmd/valve/#", expect=1).stderr
    pub.publish("cmd/valve/open", b"allowed", qos=1).wait_for_publish(5)
    assert wait_for(lambda: b"allowed" in payloads(plc), 5)
    stop(pub, plc)
    s5.close()


def test_software_and_crypto_inventory(tmp_path, pki):
    """Versions, and per listener the TLS offer and the password hashes in use (a legacy
    PBKDF2 entry shows next to the Argon2id ones)."""
    from test_tls import mtls_conf
    pw = tmp_path / "passwd"
    for user, algo in (("alice", "argon2id"), ("bob", "argon2id"), ("old", "sha512-pbkdf2")):
        r = subprocess.run([MOAT, "passwd", "-b", "-H", algo] + (["-c"] if user == "alice"
                                                                  else []) +
                           [str(pw), user, user + "-pw"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    sock = tmp_path / "a.sock"
    plain = free_port_for_test()
    b = Broker(config=mtls_conf(pki) + "password_file %s\nlistener %d 127.0.0.1\n"
               "allow_anonymous false\npassword_file %s\nadmin_socket %s\n"
               % (pw, plain, pw, sock), anonymous=False)
    try:
        assert wait_for(lambda: os.path.exists(sock), 10)
        sw = ctl(sock, "software")
        assert sw["moat"] and sw["libraries"]["tls"].startswith("OpenSSL")
        assert sw["libraries"]["sqlite"] and sw["libraries"]["libsodium"]
        ls = {x["port"]: x for x in sw["listeners"]}
        tls, tcp = ls[b.port], ls[plain]
        assert tls["transport"] == "tls" and tcp["transport"] == "tcp"
        assert tls["tls_min_version"] == "TLSv1.2"
        assert "TLS_AES_256_GCM_SHA384" in tls["cipher_suites"]
        assert all("CBC" not in s and "RC4" not in s for s in tls["cipher_suites"])
        assert tls["client_certificates"] == "required"
        assert tcp["password_hashes"] == {"argon2id": 2, "sha512-pbkdf2": 1}
        assert sw["store"] is None
    finally:
        assert b.stop() == 0


def test_users_from_ctl(tmp_path):
    """Add a user, change a password (the session that used the old one is closed), remove
    a user (its session is closed, it cannot log in again); the password never appears on
    ctl's command line."""
    pw = tmp_path / "passwd"
    r = subprocess.run([MOAT, "passwd", "-b", "-c", str(pw), "alice", "alice-pw"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    sock = tmp_path / "a.sock"
    b = Broker(config="password_file %s\nadmin_socket %s\n" % (pw, sock), anonymous=False)

    def login(user, password, cid=None):
        c = mqtt.Client(client_id=cid or uniq(user), protocol=mqtt.MQTTv5)
        c.username_pw_set(user, password)
        c.reasons = []
        c.on_disconnect = lambda cl, u, rc, props=None: c.reasons.append(
            getattr(rc, "value", rc))
        try:
            c.connect("127.0.0.1", b.port)
        except OSError:
            return None
        c.loop_start()
        ok = wait_for(c.is_connected, 3)
        if not ok:
            c.loop_stop()
            return None
        return c

    def user_set(user, password, expect=0):
        r = subprocess.run([MOAT, "ctl", "-s", str(sock), "--json", "user-set", user],
                           input=password + "\n", capture_output=True, text=True)
        assert r.returncode == expect, r.stdout + r.stderr
        return r

    try:
        assert wait_for(lambda: os.path.exists(sock), 10)
        assert login("bob", "bob-pw") is None
        user_set("bob", "bob-pw")
        assert wait_for(lambda: "bob:" in pw.read_text(), 5)
        bob = wait_for(lambda: login("bob", "bob-pw"), 5)
        assert bob, "bob cannot log in after user-set"
        alice = login("alice", "alice-pw")
        assert alice
        user_set("alice", "new-alice-pw")
        assert wait_for(lambda: alice.reasons, 5), "the old password's session stayed"
        assert wait_for(lambda: login("alice", "new-alice-pw"), 5)
        assert login("alice", "alice-pw") is None
        r = subprocess.run([MOAT, "ctl", "-s", str(sock), "user-del", "bob"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: bob.reasons, 5), "the removed user's session stayed"
        assert login("bob", "bob-pw") is None
        r = subprocess.run([MOAT, "ctl", "-s", str(sock), "user-del", "bob"],
                           capture_output=True, text=True)
        assert r.returncode == 1 and "no user bob" in r.stderr
        r = subprocess.run([MOAT, "ctl", "-s", str(sock), "user-set", "carol"],
                           input="", capture_output=True, text=True)
        assert r.returncode == 2 and "no password" in r.stderr
        for x in (alice, bob):
            x.loop_stop()
    finally:
        assert b.stop() == 0


def test_admin_answers_during_a_publish_flood(admin):
    """The admin API has its own threads: while publishers saturate the workers, status and
    clients (which asks every worker) still answer. Times are printed, not asserted beyond
    a liveness bound: the benchmark measures them (docs/benchmarks.md)."""
    from moatlib import publish_packet
    a = admin()
    sub = client(a.port, "sink", 4, persistent=False)
    subscribe(sub, "flood/#", 0)
    stopping = threading.Event()
    sent = [0]

    def flood(k):
        s = socket_connect(a.port, "flooder-%d" % k)
        batch = b"".join(publish_packet("flood/%d" % k, b"x" * 64) for _ in range(500))
        while not stopping.is_set():
            s.sendall(batch)
            sent[0] += 500
        s.close()

    threads = [threading.Thread(target=flood, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        times = {"status": [], "clients": []}
        for _ in range(10):
            for cmd in times:
                t0 = time.time()
                r = a.ctl(cmd)
                times[cmd].append(time.time() - t0)
                assert r
        print("admin latency under flood (s): status max %.3f, clients max %.3f; %d published"
              % (max(times["status"]), max(times["clients"]), sent[0]))
        assert max(times["status"]) < 5 and max(times["clients"]) < 5
    finally:
        stopping.set()
        for t in threads:
            t.join(10)
        stop(sub)


def socket_connect(port, cid):
    import socket as so
    from moatlib import connect_packet
    s = so.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(connect_packet(cid, 4))
    assert s.recv(4)[0] == 0x20
    return s


def test_store_rekey_on_a_running_broker_goes_through_it(admin, tmp_path):
    """`moat store rekey DIR NEWKEY` on a store a running moatd has open asks that moatd
    (online) instead of refusing: the key file is replaced and the broker goes on."""
    a = admin()
    c = client(a.port, "keeper", 4)
    subscribe(c, "k/#", 1)
    stop(c)
    new = keygen(tmp_path / "new.key")
    r = subprocess.run([MOAT, "store", "rekey", a.dir, new], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "asking it to rotate the key online" in r.stderr
    assert json.loads(r.stdout)["key_generation"] == 2
    assert open(a.key).read() == open(new).read()
    assert a.ctl("status")["store"]["key_generation"] == 2


def _https(port, pki, path, cert=None, token=None, method="GET"):
    """One request to the admin API's TCP listener; returns (status, body) or the error."""
    import http.client
    import ssl as _ssl
    ctx = _ssl.create_default_context(cafile=pki.ca)
    if cert:
        ctx.load_cert_chain(cert.cert, cert.key)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    headers = {"Authorization": "Bearer " + token} if token else {}
    try:
        conn.request(method, path, headers=headers)
        r = conn.getresponse()
        return r.status, r.read().decode()
    except (OSError, _ssl.SSLError, http.client.HTTPException) as e:
        return None, str(e)
    finally:
        conn.close()


def test_admin_over_tcp_tls_token_and_certificate(tmp_path, pki):
    """admin_port: TLS only; a bearer token (admin_token_file) and/or a client certificate
    (admin_cafile) are required; refusals are admin events; a plain-text client gets
    nothing; a token file others may read is refused at start."""
    from moatlib import free_port
    token = "t0k3n-" + "x" * 40
    tf = tmp_path / "admin.token"
    tf.write_text(token + "\n")
    os.chmod(tf, 0o600)
    audit = tmp_path / "audit.log"
    port = free_port()
    base = ("admin_socket %s\nadmin_port %d\nadmin_certfile %s\nadmin_keyfile %s\n"
            "audit_log %s\n" % (tmp_path / "a.sock", port, pki.server.cert, pki.server.key, audit))
    b = Broker(config=base + "admin_token_file %s\n" % tf)
    try:
        assert wait_for(lambda: os.path.exists(tmp_path / "a.sock"), 10)
        st, body = _https(port, pki, "/v1/status", token=token)
        assert st == 200 and json.loads(body)["pid"] == b.proc.pid, body
        st, body = _https(port, pki, "/v1/status")
        assert st == 401 and "bearer token" in body
        st, body = _https(port, pki, "/v1/status", token=token[:-1] + "y")
        assert st == 401
        st, body = _https(port, pki, "/v1/lockdown?state=on", token=token, method="POST")
        assert st == 200
        # plain text to the TLS port: no answer
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = s.recv(100)
        except OSError:
            data = b""
        assert not data.startswith(b"HTTP/1.1 200")
        s.close()
        assert wait_for(lambda: [e for e in audit_events(audit, "admin")
                                 if "bearer token missing or wrong" in e.get("reason", "")], 5)
        assert wait_for(lambda: [e for e in audit_events(audit, "admin")
                                 if e.get("reason") == "lockdown on"], 5)
        ev = [e for e in audit_events(audit, "admin") if e.get("reason") == "lockdown on"]
        assert ev[0]["addr"].startswith("tcp 127.0.0.1:")
    finally:
        assert b.stop() == 0
        b.check_clean()
    # client certificates instead of a token
    b = Broker(config=base + "admin_cafile %s\n" % pki.ca)
    try:
        assert wait_for(lambda: os.path.exists(tmp_path / "a.sock"), 10)
        st, body = _https(port, pki, "/v1/status", cert=pki.dev1)
        assert st == 200, body
        st, body = _https(port, pki, "/v1/status")
        assert st is None  # the handshake needs a certificate
        st, body = _https(port, pki, "/v1/status", cert=pki.stranger)
        assert st is None  # another CA's
        st, body = _https(port, pki, "/v1/lockdown?state=off", cert=pki.dev1, method="POST")
        assert st == 200
        assert wait_for(lambda: [e for e in audit_events(audit, "admin")
                                 if e.get("reason") == "lockdown off"], 5)
        ev = [e for e in audit_events(audit, "admin") if e.get("reason") == "lockdown off"]
        assert "CN=device-1" in ev[-1]["addr"]
    finally:
        assert b.stop() == 0
        b.check_clean()
    # refused configurations
    for extra, why in (("", "admin_cafile (client certificates), admin_token_file"),
                       ("admin_token_file %s\n" % tf, "chmod 600")):
        conf = tmp_path / "bad.conf"
        conf.write_text("listener %d 127.0.0.1\n" % free_port() + base + extra)
        if "chmod" in why:
            os.chmod(tf, 0o644)
        r = subprocess.run([MOATD, "-c", str(conf)], capture_output=True, text=True, timeout=15)
        assert r.returncode != 0 and why in r.stderr, r.stderr
    os.chmod(tf, 0o600)


def test_inventory_survives_a_restart(admin):
    """With persistence, the inventory is kept in the store: after a restart (clean, then
    kill -9) every device seen is still listed, offline, with what it said of itself."""
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    a = admin()
    dev = mqtt.Client(client_id="meter-42", protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.UserProperty = [("model", "M-3"), ("fw", "7.1")]
    dev.connect("127.0.0.1", a.port, properties=props)
    dev.loop_start()
    assert wait_for(dev.is_connected, 5)
    dev.disconnect()
    dev.loop_stop()
    old = client(a.port, "hmi-old", 4, persistent=False)
    stop(old)
    time.sleep(0.3)
    a.stop()
    a.b.start()
    a.wait_socket()
    inv = {d["client_id"]: d for d in a.ctl("inventory")["devices"]}
    assert set(inv) >= {"meter-42", "hmi-old"}, inv
    assert inv["meter-42"]["software"] == {"model": "M-3", "fw": "7.1"}
    assert inv["meter-42"]["online"] is False and inv["meter-42"]["protocols"] == ["5.0"]
    assert "devices=" in a.b.output()
    again = client(a.port, "hmi-old", 4, persistent=False)
    assert wait_for(lambda: {d["client_id"]: d for d in a.ctl("inventory")["devices"]}
                    ["hmi-old"]["connects"] == 2, 5)
    stop(again)
    time.sleep(0.5)
    a.b.proc.kill()
    a.b.proc.wait()
    a.b.log.close()
    a.b.start()
    a.wait_socket()
    inv = {d["client_id"]: d for d in a.ctl("inventory")["devices"]}
    assert inv["hmi-old"]["connects"] == 2 and "meter-42" in inv
