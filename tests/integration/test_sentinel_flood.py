"""Publish floods: max_message_rate / max_byte_rate and the publish_flood detector.

A client over its rate is slowed, never silently robbed: its reads pause (TCP pushes
back), MQTT 5 QoS 1/2 publishes over the rate are answered PUBACK/PUBREC 0x97 (quota
exceeded), and a client that keeps flooding is disconnected by the sentinel with
DISCONNECT 0x96 (message rate too high). The attacker connects from 127.0.0.2; the
allow-list holds only 127.0.0.1, where a bystander publisher and subscriber keep their
numbered sequence whole throughout (the rate limits apply to them too: they are slowed,
not robbed). The scene, the bystander and the checks are sentinellib.py's.

Covers:
  - MQTT 5 QoS 1 flood: PUBACKs with 0x97, rate_limited and detection events in the audit
    log and on $SYS, DISCONNECT 0x96, no ban; the attacker may come back;
  - MQTT 3.1.1 QoS 0 flood with the detector off: the broker reads it at the configured
    rate (back-pressure) and delivers every message, in order;
  - max_byte_rate alone slows a client sending big payloads;
  - max_accept_rate: a listener's new connections per second, all addresses together;
  - $SYS/moat/events/<kind> and $SYS/moat/bans/count follow a ban and its end.
"""
import time

from moatlib import connect_packet, make_broker, publish_packet, wait_for, watchdog  # noqa: F401
from sentinellib import (ATTACKER, GOOD, ban_runs_its_course, connect_burst,  # noqa: F401
                         disconnected, has, scene, sentenced, uniq)


def test_v5_qos1_flood_gets_0x97_then_0x96(scene):
    watch, by = scene.begin("max_message_rate 20\nsentinel_publish_flood 3 30 disconnect\n")
    r = scene.session(ATTACKER, 5, client_id="flooder")
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
        except OSError:  # closed, or a send timeout while the broker does not read
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
    scene.audit.wait(kind="rate_limited", client_id="flooder", host=ATTACKER)
    disconnected(scene, watch, "publish_flood: 3 in 30 s by client id -> disconnect",
                 client_id="flooder")
    # a disconnect is not a ban: the client may come back and behave
    back = scene.session(ATTACKER, 5, client_id="flooder")
    assert back.publish("flood/x", b"ok", qos=1, pid=1) < 0x80
    by.check()


def _flood_is_slowed(scene, client_id, payloads):
    """The attacker's 3.1.1 client publishes payloads to flood/x at QoS 0 as fast as paho
    goes, watched by a subscriber on 127.0.0.1: 1.5 s later less than half has arrived
    (back-pressure), then all of it does; the client is rate_limited, not kicked. Returns
    the payloads received and the seconds they took."""
    sub = scene.client(GOOD, client_id=uniq("watch"), version=4)
    assert sub.attempt() == 0
    assert sub.subscribe("flood/#", qos=0) == [0]
    att = scene.client(ATTACKER, client_id=client_id, version=4)
    assert att.attempt() == 0
    n = len(payloads)
    start = time.time()
    for p in payloads:
        att.c.publish("flood/x", p, qos=0)
    time.sleep(1.5)
    early = len(sub.payloads("flood/x"))
    assert early < n / 2, "no back-pressure: %d of %d delivered in 1.5 s" % (early, n)
    assert wait_for(lambda: len(sub.payloads("flood/x")) >= n, 25), \
        "lost: %d of %d" % (len(sub.payloads("flood/x")), n)
    took = time.time() - start
    scene.audit.wait(kind="rate_limited", client_id=client_id, host=ATTACKER)
    assert scene.audit.events(kind="kicked") == []
    return sub.payloads("flood/x"), took


def test_v311_qos0_flood_is_slowed_not_dropped(scene):
    _, by = scene.begin("max_message_rate 50\nsentinel_publish_flood off\n", watch=False)
    total = 400
    # 50/s with a burst of 50: about 125 after 1.5 s, far from all 400
    got, took = _flood_is_slowed(scene, "paho-flood", [b"%d" % i for i in range(total)])
    assert [int(p) for p in got] == list(range(total)), "out of order or duplicated"
    assert took > 4  # 400 at 50/s takes about 7 s
    by.check()


def test_byte_rate_slows_big_payloads(scene):
    _, by = scene.begin("max_byte_rate 20000\nsentinel_publish_flood off\n", watch=False)
    n = 20  # 20 x 10 kB = 200 kB at 20 kB/s: about 9 s
    got, took = _flood_is_slowed(scene, "big-sender", [b"z" * 10000] * n)
    assert got == [b"z" * 10000] * n
    assert took > 4
    by.check()


def test_listener_accept_rate(scene):
    _, by = scene.begin("max_accept_rate 5\n", watch=False)
    time.sleep(2)  # the bucket (10) fills up again after the bystander's connections
    accepted = connect_burst(scene, 40)
    # a burst of 10, then 5 a second: most of 40 at once is refused
    assert accepted >= 8 and 40 - accepted >= 10, accepted
    scene.audit.wait(kind="rate_limited", reason=has("max_accept_rate"))
    time.sleep(1.2)
    r = scene.raw()
    r.send(connect_packet("after", version=4))
    assert r.recv_packet(timeout=3)[0] == 0x20
    by.check()


def test_sys_counts_security_events(scene):
    """$SYS/moat/events/<kind> counts every event of the kind; $SYS/moat/bans/count the
    bans in force (here one, placed by the violations detector, then none once it ends)."""
    _, by = scene.begin("sys_interval 1\nsentinel_violations 1 60 ban\n", watch=False)
    sys = scene.watch("$SYS/moat/events/#", "$SYS/moat/bans/count")
    r = scene.raw()
    r.send(b"\x10\x00")  # a CONNECT with no body: a protocol violation
    assert r.wait_closed(5)[0]
    ban = sentenced(scene, None, "violations: 1 in 60 s by address -> ban")
    assert wait_for(lambda: (sys.last("$SYS/moat/events/banned") or 0) >= 1, 10)
    assert sys.last("$SYS/moat/events/protocol_violation") >= 1
    assert wait_for(lambda: sys.last("$SYS/moat/bans/count") == 1, 5)
    assert sys.last("$SYS/moat/events/auth_success") is not None
    ban_runs_its_course(scene, ban)
    assert wait_for(lambda: sys.last("$SYS/moat/bans/count") == 0, 5)
    by.check()


def test_throttle_response_slows_then_lets_go(scene):
    """publish_flood with the throttle action: the flooder is held to one message a second
    for sentinel_throttle seconds (not kicked, not banned, nothing it sent lost), then its
    configured rate comes back."""
    _, by = scene.begin("max_message_rate 20\nsentinel_publish_flood 2 30 throttle\n"
                        "sentinel_throttle 6\n", watch=False)
    sub = scene.client(GOOD, client_id=uniq("watch"), version=4)
    assert sub.attempt() == 0
    assert sub.subscribe("flood/#", qos=0) == [0]
    att = scene.client(ATTACKER, client_id="pusher", version=4)
    assert att.attempt() == 0
    total = 150
    for i in range(total):
        att.c.publish("flood/x", b"%d" % i, qos=0)
    det = scene.audit.wait(kind="detection", client_id="pusher")
    assert det["reason"] == "publish_flood: 2 in 30 s by client id -> throttle", det
    # throttled: about one a second for 6 s (from when the verdict reaches the worker: a
    # loaded machine may take a moment after the detection)
    time.sleep(1.0)
    n0 = len(sub.payloads("flood/x"))
    time.sleep(2.0)
    n1 = len(sub.payloads("flood/x"))
    assert n1 - n0 <= 4, "not throttled: %d in 2 s" % (n1 - n0)
    # then 20 a second again, and everything arrives in order
    assert wait_for(lambda: len(sub.payloads("flood/x")) >= total, 25), \
        "lost: %d of %d" % (len(sub.payloads("flood/x")), total)
    assert [int(p) for p in sub.payloads("flood/x")] == list(range(total))
    assert scene.audit.events(kind="kicked") == [] and scene.audit.events(kind="banned") == []
    by.check()
