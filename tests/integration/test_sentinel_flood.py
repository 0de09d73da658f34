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
import threading
import time

import paho.mqtt.client as mqtt

from moatlib import Raw, connect_packet, publish_packet
from sentinellib import ATTACKER, Bystander, audit_has, sentinel_broker, raw_from, wait_for  # noqa: F401

def test_v5_qos1_flood_gets_0x97_then_0x96(sentinel_broker):
    b = sentinel_broker("max_message_rate 20\nsentinel_publish_flood 3 30 disconnect\n")
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


def test_v311_qos0_flood_is_slowed_not_dropped(sentinel_broker):
    b = sentinel_broker("max_message_rate 50\nsentinel_publish_flood off\n")
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


def test_byte_rate_slows_big_payloads(sentinel_broker):
    b = sentinel_broker("max_byte_rate 20000\nsentinel_publish_flood off\n")
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


def test_listener_accept_rate(sentinel_broker):
    b = sentinel_broker("max_accept_rate 5\n")
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


def test_sys_counts_security_events(sentinel_broker):
    """$SYS/moat/events/<kind> counts every event of the kind; $SYS/moat/bans/count the
    bans in force (here one, placed by the violations detector)."""
    b = sentinel_broker("sys_interval 1\nsentinel_violations 1 60 ban\nsentinel_ban_steps 30\n")
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
