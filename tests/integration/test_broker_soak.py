"""A bounded soak (issue 3, "Tests"): ~40 paho clients, 3.1.1 and 5.0 mixed, subscribing,
publishing at QoS 0/1/2 and reconnecting with persistent sessions, gracefully and abruptly.

Checked at the end:
- no QoS 1/2 message is lost: every message whose publish completed reached every
  subscriber (all subscribed before the first publish, all with persistent sessions and an
  unbounded queue, so reconnects must not lose anything);
- no QoS 2 message is delivered twice to a subscriber that subscribed at QoS 2;
- once every client is gone and every session ended, moatd's RSS is back near the baseline
  taken after warm-up.

MOAT_SOAK_SECONDS (default 60) bounds the whole test; about two thirds of it is publishing.
"""
import collections
import os
import random
import socket
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from moatlib import make_broker, wait_for, watchdog  # noqa: F401

SOAK = float(os.environ.get("MOAT_SOAK_SECONDS", "60"))
N_SUB = 16
N_PUB = 24
RATE = 5.0  # messages per second per publisher


class Node:
    """One paho client with its own network thread; remembers what it received."""

    def __init__(self, port, cid, version, persistent=True):
        self.port = port
        self.cid = cid
        self.version = version
        self.connected = threading.Event()
        self.lock = threading.Lock()
        self.received = []      # (publisher, seq, qos)
        self.completed = {}     # mid -> True once PUBACK/PUBCOMP came
        self.sent = {}          # mid -> (seq, qos), for this publisher
        self.connects = 0
        self.subacked = threading.Event()
        if version == 5:
            self.c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5)
            self.props = Properties(PacketTypes.CONNECT)
            self.props.SessionExpiryInterval = 3600 if persistent else 0
        else:
            self.c = mqtt.Client(client_id=cid, clean_session=not persistent,
                                 protocol=mqtt.MQTTv311)
            self.props = None
        self.c.max_queued_messages_set(0)
        self.c.reconnect_delay_set(0.5, 2)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = lambda *args: self.subacked.set()

    def _on_connect(self, c, u, flags, rc, properties=None):
        if rc == 0:
            self.connects += 1
            self.connected.set()

    def _on_disconnect(self, c, u, rc, properties=None):
        self.connected.clear()

    def _on_message(self, c, u, msg):
        pub, seq = msg.payload.split(b"|", 1)[0].split(b":")
        with self.lock:
            self.received.append((pub.decode(), int(seq), msg.qos))

    def _on_publish(self, c, u, mid):
        with self.lock:
            self.completed[mid] = True

    def start(self):
        kw = {}
        if self.version == 5:
            # clean on the first connect only: paho's reconnects resume the session
            kw = {"clean_start": mqtt.MQTT_CLEAN_START_FIRST_ONLY, "properties": self.props}
        self.c.connect("127.0.0.1", self.port, 30, **kw)
        self.c.loop_start()
        assert self.connected.wait(10), "%s: no CONNACK" % self.cid

    def graceful_reconnect(self):
        self.c.disconnect()
        self.c.loop_stop()
        self.connected.clear()
        self.c.reconnect()
        self.c.loop_start()
        return self.connected.wait(10)

    def abrupt_reconnect(self):
        """Shuts the socket under paho's feet: no DISCONNECT; paho reconnects by itself."""
        s = self.c.socket()
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self, end_session=True):
        try:
            if self.version == 5 and end_session:
                pr = Properties(PacketTypes.DISCONNECT)
                pr.SessionExpiryInterval = 0
                self.c.disconnect(properties=pr)
            else:
                self.c.disconnect()
        except Exception:
            pass
        self.c.loop_stop()


def test_soak(make_broker):
    import signal
    signal.alarm(int(SOAK + 90))  # replaces the watchdog's default bound
    b = make_broker(config="max_queued_messages 0\nsys_interval 2\nworkers 4\n",
                    asan_options="quarantine_size_mb=4:thread_local_quarantine_size_kb=64")
    t0 = time.time()
    run = uuid.uuid4().hex[:6]
    publish_for = max(5.0, SOAK * 0.7)
    rnd = random.Random(1234)

    subs = [Node(b.port, "soak-sub-%s-%d" % (run, i), 5 if i % 2 else 4) for i in range(N_SUB)]
    pubs = [Node(b.port, "soak-pub-%s-%d" % (run, i), 5 if i % 3 else 4) for i in range(N_PUB)]
    sub_qos = {s.cid: 2 if i % 4 else 1 for i, s in enumerate(subs)}
    for s in subs:
        s.start()
        r, mid = s.c.subscribe("soak/%s/#" % run, sub_qos[s.cid])
        assert r == 0
    # the SUBACKs: only then is each subscription in place for the probe
    assert all(s.subacked.wait(10) for s in subs), "a SUBACK did not come"
    # every subscription is in place before the first publish: a round trip through each
    probe = Node(b.port, "soak-probe-%s" % run, 5, persistent=False)
    probe.start()
    probe.c.publish("soak/%s/probe" % run, b"probe:0|", 1).wait_for_publish(10)
    assert wait_for(lambda: all(any(r[0] == "probe" for r in s.received) for s in subs), 10)
    probe.stop()
    for p in pubs:
        p.start()

    stop = threading.Event()
    errors = []

    def publisher(i, p):
        qos = i % 3
        seq = 0
        prng = random.Random(i)
        try:
            while not stop.is_set():
                if not p.connected.wait(5):
                    continue
                seq += 1
                pad = b"x" * prng.choice((0, 10, 100, 1000, 4000))
                info = p.c.publish("soak/%s/p%d" % (run, i), b"p%d:%d|" % (i, seq) + pad, qos)
                with p.lock:
                    p.sent[info.mid] = (seq, qos)
                stop.wait(1.0 / RATE * prng.uniform(0.5, 1.5))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=publisher, args=(i, p), daemon=True)
               for i, p in enumerate(pubs)]
    for th in threads:
        th.start()

    # churn: some subscribers and publishers reconnect, gracefully or not
    warm = time.time() + min(3.0, publish_for / 4)
    baseline = None
    end = time.time() + publish_for
    churn_subs = subs[:6]
    churn_pubs = [p for i, p in enumerate(pubs) if i % 3 and i < 12]  # QoS 1 and 2 ones
    k = 0
    while time.time() < end:
        if baseline is None and time.time() >= warm:
            baseline = b.rss_kb()
        if k % 2 == 0:
            victim = churn_subs[(k // 2) % len(churn_subs)]
        else:
            victim = churn_pubs[(k // 2) % len(churn_pubs)]
        if (k // 2) % 3 == 0:
            victim.abrupt_reconnect()
        else:
            assert victim.graceful_reconnect(), "%s could not reconnect" % victim.cid
        k += 1
        time.sleep(rnd.uniform(0.3, 1.0))
        assert b.proc.poll() is None, "moatd died:\n" + b.output()[-4000:]
    stop.set()
    for th in threads:
        th.join(10)
    assert not errors, errors
    assert baseline is not None

    # every QoS 1/2 publish completes (publishers whose connection was cut resend)
    def outstanding():
        n = 0
        for p in pubs:
            with p.lock:
                n += sum(1 for mid, (seq, q) in p.sent.items() if q and mid not in p.completed)
        return n
    drain_deadline = time.time() + max(10.0, SOAK / 4)
    assert wait_for(lambda: outstanding() == 0, drain_deadline - time.time(), 0.2), \
        "%d publishes never completed" % outstanding()

    expected = set()
    for i, p in enumerate(pubs):
        with p.lock:
            for mid, (seq, q) in p.sent.items():
                if q and mid in p.completed:
                    expected.add(("p%d" % i, seq))
    assert len(expected) > N_PUB * publish_for  # sanity: the soak did publish

    def missing(s):
        with s.lock:
            got = {(pub, seq) for pub, seq, q in s.received}
        return expected - got
    wait_for(lambda: all(not missing(s) for s in subs), drain_deadline - time.time() + 5, 0.2)
    lost = {s.cid: sorted(missing(s))[:10] for s in subs if missing(s)}
    assert not lost, "QoS 1/2 messages lost: %r" % lost

    dups = {}
    for s in subs:
        with s.lock:
            c = collections.Counter((pub, seq) for pub, seq, q in s.received if q == 2)
        d = [k for k, v in c.items() if v > 1]
        if d:
            dups[s.cid] = d[:10]
    assert not dups, "QoS 2 messages delivered twice: %r" % dups
    assert sum(s.connects for s in subs + pubs) > N_SUB + N_PUB, "no reconnect happened"

    # everyone leaves, every session ends
    for n in subs + pubs:
        n.stop()
    for n in subs + pubs:
        if n.version == 4:
            # a clean session ends the persistent one
            c = Node(b.port, n.cid, 4, persistent=False)
            c.start()
            c.stop()
    assert b.proc.poll() is None

    def settled():
        return b.rss_kb() <= max(baseline + 20 * 1024, 2 * baseline)
    ok = wait_for(settled, 10, 0.5)
    print("soak: %d QoS 1/2 messages x %d subscribers, %d connects, RSS baseline %d KiB, "
          "after %d KiB" % (len(expected), N_SUB, sum(s.connects for s in subs + pubs),
                            baseline, b.rss_kb()))
    assert ok, "RSS %d KiB after the soak, baseline %d KiB" % (b.rss_kb(), baseline)
    assert time.time() - t0 < SOAK + 60
