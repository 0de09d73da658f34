"""Publish floods: max_message_rate / max_byte_rate and the publish_flood detector.

A client over its rate is slowed, never silently robbed: its reads pause (TCP pushes
back), MQTT 5 QoS 1/2 publishes over the rate are answered PUBACK/PUBREC 0x97 (quota
exceeded), and a client that keeps flooding is disconnected by the sentinel with
DISCONNECT 0x96 (message rate too high). The attacker connects from 127.0.0.2; the
allow-list holds only 127.0.0.1, where a bystander publisher and subscriber keep their
numbered sequence whole throughout.

Covers:
  - MQTT 5 QoS 1 flood: PUBACKs with 0x97, rate_limited and detection events in the audit
    log, DISCONNECT 0x96, the bystander loses nothing; the attacker may come back;
  - MQTT 3.1.1 QoS 0 flood with the detector off: the broker reads it at the configured
    rate (back-pressure) and delivers every message, in order;
  - max_byte_rate alone slows a client sending big payloads;
  - max_accept_rate: a listener's new connections per second, all addresses together.
"""
import json
import os
import socket
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from moatlib import Broker, connect_packet, publish_packet, subscribe_packet, Raw

ATTACKER = "127.0.0.2"


def wait_for(cond, timeout=10, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return cond()


def audit_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def audit_has(path, kind, contains=""):
    return [e for e in audit_lines(path)
            if e.get("kind") == kind and contains in json.dumps(e)]


@pytest.fixture
def flood_broker(tmp_path):
    made = []

    def make(config):
        audit = str(tmp_path / "audit.log")
        b = Broker(config="sentinel_allow 127.0.0.1\naudit_log %s\n%s" % (audit, config))
        b.audit = audit
        made.append(b)
        return b

    yield make
    for b in made:
        rc = b.stop()
        b.check_clean()
        assert rc == 0, b.output()[-3000:]


class Bystander:
    """A subscriber and a publisher on 127.0.0.1 exchanging a numbered QoS 1 sequence."""

    def __init__(self, port, topic="plant/status", rate=5):
        self.topic, self.rate, self.port = topic, rate, port
        self.got = []
        self.sent = 0
        self.stop_flag = threading.Event()
        self.sub = mqtt.Client(client_id="bystander-sub", protocol=mqtt.MQTTv311)
        self.sub.on_message = lambda c, u, m: self.got.append(int(m.payload))
        subscribed = threading.Event()
        self.sub.on_subscribe = lambda *a: subscribed.set()
        self.sub.connect("127.0.0.1", port)
        self.sub.loop_start()
        self.sub.subscribe(topic, qos=1)
        assert subscribed.wait(5)
        self.pub = mqtt.Client(client_id="bystander-pub", protocol=mqtt.MQTTv311)
        self.pub.connect("127.0.0.1", port)
        self.pub.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_flag.is_set():
            self.pub.publish(self.topic, str(self.sent), qos=1).wait_for_publish(5)
            self.sent += 1
            time.sleep(1.0 / self.rate)

    def finish(self):
        self.stop_flag.set()
        self.thread.join(10)
        assert wait_for(lambda: len(self.got) >= self.sent, 10), (self.sent, len(self.got))
        assert sorted(set(self.got)) == list(range(self.sent)), "bystander lost messages"
        assert self.sent > 5
        for c in (self.pub, self.sub):
            c.disconnect()
            c.loop_stop()


def raw_from(port, source=ATTACKER):
    """A Raw connection whose socket is bound to source first."""
    r = Raw.__new__(Raw)
    r.s = socket.socket()
    r.s.bind((source, 0))
    r.s.settimeout(5)
    r.s.connect(("127.0.0.1", port))
    r.buf = b""
    return r


def test_v5_qos1_flood_gets_0x97_then_0x96(flood_broker):
    b = flood_broker("max_message_rate 20\nsentinel_publish_flood 3 30 disconnect\n")
    by = Bystander(b.port)
    r = raw_from(b.port)
    r.send(connect_packet("flooder", version=5))
    first, body = r.recv_packet()
    assert first == 0x20 and body[1] == 0
    codes = {}
    disconnect = None
    deadline = time.time() + 20
    pid = 0
    while disconnect is None and time.time() < deadline:
        # 50 QoS 1 publishes per round; the broker answers each (or stops reading)
        burst = b""
        for _ in range(50):
            pid = pid % 65535 + 1
            burst += publish_packet("flood/x", b"x" * 10, qos=1, pid=pid, version=5)
        try:
            r.send(burst)
        except OSError:
            pass
        while True:
            p = r.recv_packet(timeout=0.05)
            if p is None:
                break
            if p[0] >> 4 == 4:  # PUBACK: packet id, then the reason code (absent = 0)
                code = p[1][2] if len(p[1]) > 2 else 0
                codes[code] = codes.get(code, 0) + 1
            elif p[0] >> 4 == 14:
                disconnect = p[1][0] if p[1] else 0
                break
    assert disconnect == 0x96, "DISCONNECT %r, acks %r" % (disconnect, codes)
    assert codes.get(0x97), "no PUBACK 0x97: %r" % codes
    assert codes.get(0x10) or codes.get(0), "the publishes within the rate are taken: %r" % codes
    assert r.closed()
    assert wait_for(lambda: audit_has(b.audit, "rate_limited", "flooder"))
    assert wait_for(lambda: audit_has(b.audit, "detection", "publish_flood"))
    assert wait_for(lambda: audit_has(b.audit, "kicked", "flooder"))
    assert not audit_has(b.audit, "banned")
    # a disconnect is not a ban: the client may come back and behave
    back = raw_from(b.port)
    back.send(connect_packet("flooder", version=5))
    first, body = back.recv_packet()
    assert first == 0x20 and body[1] == 0
    back.send(publish_packet("flood/x", b"ok", qos=1, pid=1, version=5))
    first, body = back.recv_packet()
    assert first >> 4 == 4 and (len(body) < 3 or body[2] < 0x80)
    back.close()
    by.finish()


def test_v311_qos0_flood_is_slowed_not_dropped(flood_broker):
    b = flood_broker("max_message_rate 50\nsentinel_publish_flood off\n")
    by = Bystander(b.port)
    got = []
    sub = mqtt.Client(client_id="watch", protocol=mqtt.MQTTv311)
    sub.on_message = lambda c, u, m: got.append(int(m.payload))
    ok = threading.Event()
    sub.on_subscribe = lambda *a: ok.set()
    sub.connect("127.0.0.1", b.port)
    sub.loop_start()
    sub.subscribe("flood/#", qos=0)
    assert ok.wait(5)
    att = mqtt.Client(client_id="paho-flood", protocol=mqtt.MQTTv311)
    att.connect("127.0.0.1", b.port, bind_address=ATTACKER)
    att.loop_start()
    total = 400
    start = time.time()
    for i in range(total):
        att.publish("flood/y", str(i), qos=0)
    time.sleep(1.5)
    early = len(got)
    # 50/s with a burst of 50: about 125 by now, far from all 400
    assert early < total / 2, "no back-pressure: %d of %d delivered in 1.5 s" % (early, total)
    assert wait_for(lambda: len(got) >= total, 25), "lost: %d of %d" % (len(got), total)
    assert got == list(range(total)), "out of order or duplicated"
    assert time.time() - start > 4  # 400 at 50/s takes about 7 s
    assert wait_for(lambda: audit_has(b.audit, "rate_limited", "paho-flood"))
    assert not audit_has(b.audit, "kicked")
    for c in (att, sub):
        c.disconnect()
        c.loop_stop()
    by.finish()


def test_byte_rate_slows_big_payloads(flood_broker):
    b = flood_broker("max_byte_rate 20000\nsentinel_publish_flood off\n")
    got = []
    sub = mqtt.Client(client_id="watch", protocol=mqtt.MQTTv311)
    sub.on_message = lambda c, u, m: got.append(len(m.payload))
    ok = threading.Event()
    sub.on_subscribe = lambda *a: ok.set()
    sub.connect("127.0.0.1", b.port)
    sub.loop_start()
    sub.subscribe("big", qos=0)
    assert ok.wait(5)
    att = mqtt.Client(client_id="big-sender", protocol=mqtt.MQTTv311)
    att.connect("127.0.0.1", b.port)
    att.loop_start()
    n = 20  # 20 x 10 kB = 200 kB at 20 kB/s: about 9 s
    for _ in range(n):
        att.publish("big", b"z" * 10000, qos=0)
    time.sleep(1.5)
    assert len(got) < n / 2, "no byte-rate back-pressure: %d of %d" % (len(got), n)
    assert wait_for(lambda: len(got) >= n, 25), "lost: %d of %d" % (len(got), n)
    assert wait_for(lambda: audit_has(b.audit, "rate_limited", "big-sender"))
    for c in (att, sub):
        c.disconnect()
        c.loop_stop()


def test_listener_accept_rate(flood_broker):
    b = flood_broker("max_accept_rate 5\n")
    refused = accepted = 0
    for i in range(40):
        r = Raw(b.port)
        try:
            r.send(connect_packet("acc-%d" % i, version=4))
            pkt = r.recv_packet(timeout=2)
        except OSError:
            pkt = None
        if pkt and pkt[0] == 0x20:
            accepted += 1
        else:
            refused += 1
        r.close()
    # a burst of 10 (the test's start-up probe took one), then 5 a second: most of a
    # fast run of 40 is refused
    assert accepted >= 8 and refused >= 10, (accepted, refused)
    assert wait_for(lambda: audit_has(b.audit, "rate_limited", "max_accept_rate"))
    time.sleep(1.2)
    r = Raw(b.port)
    r.send(connect_packet("after", version=4))
    assert r.recv_packet(timeout=3)[0] == 0x20
    r.close()


def test_sys_counts_security_events(flood_broker):
    """$SYS/moat/events/<kind> counts every event of the kind; $SYS/moat/bans/count the
    bans in force (here one, placed by the violations detector)."""
    b = flood_broker("sys_interval 1\nsentinel_violations 1 60 ban\nsentinel_ban_steps 30\n")
    r = raw_from(b.port)
    r.send(b"\x10\x00")  # a CONNECT with no body: a protocol violation
    assert r.closed()
    seen = {}
    sub = mqtt.Client(client_id="sys-watch", protocol=mqtt.MQTTv311)
    sub.on_message = lambda c, u, m: seen.__setitem__(m.topic, int(m.payload))
    sub.connect("127.0.0.1", b.port)
    sub.loop_start()
    sub.subscribe([("$SYS/moat/events/#", 0), ("$SYS/moat/bans/count", 0)])
    assert wait_for(lambda: seen.get("$SYS/moat/events/banned", 0) >= 1, 10), seen
    assert seen.get("$SYS/moat/events/protocol_violation", 0) >= 1, seen
    assert wait_for(lambda: seen.get("$SYS/moat/bans/count") == 1, 5), seen
    assert "$SYS/moat/events/auth_success" in seen
    sub.disconnect()
    sub.loop_stop()
