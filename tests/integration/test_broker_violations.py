"""Protocol violations over raw sockets (THREATS.md classes 1-9): each one closes only the
offending connection, with the MQTT 5.0 reason code in DISCONNECT (in CONNACK for a faulty
CONNECT) where the spec gives one, and a bystander connected at the same time keeps working.

Expected reasons follow docs/codec.md and the spec: 0x81 Malformed Packet, 0x82 Protocol
Error, 0x90 Topic Name invalid, 0x99 Payload format invalid. 3.1.1 connections are closed
without a DISCONNECT (3.1.1 has none), CONNECT faults with a 3.1.1 CONNACK code where 3.1.1
gives one.
"""
import struct
import time
import uuid

import pytest

from moatlib import (PUBACK, PUBCOMP, PUBREC, PUBREL, Publish, Raw, ack_packet,  # noqa: F401
                     broker, clients, connect5_packet, connect_packet, disconnect_packet,
                     make_broker, mqtt_str, packet, parse_connack, parse_reason, props,
                     publish_packet, raw_session, sub_opts, subscribe_packet, unsubscribe_packet,
                     varint, watchdog)


def uniq(name="t"):
    return "%s-%s" % (name, uuid.uuid4().hex[:8])


class Bystander:
    """A 5.0 client subscribed to its own topic; check() does a QoS 1 round trip and a ping."""

    def __init__(self, port):
        self.port = port
        self.r = raw_session(port, 5, uniq("bystander"))
        self.topic = uniq("by")
        self.r.subscribe([(self.topic, 1)])
        self.n = 0

    def check(self):
        self.n += 1
        pid = self.n
        self.r.send(publish_packet(self.topic, b"%d" % pid, 1, pid, version=5))
        acked = got = False
        deadline = time.time() + 5
        while not (acked and got) and time.time() < deadline:
            p = self.r.recv_packet(max(0.05, deadline - time.time()))
            assert p is not None, "the bystander lost its connection"
            if p[0] >> 4 == 4:
                assert parse_reason(*p, 5)[0] == pid
                acked = True
            elif p[0] >> 4 == 3:
                m = Publish(p[0], p[1], 5)
                assert m.payload == b"%d" % pid
                self.r.send(ack_packet(PUBACK, m.pid, 5))
                got = True
        assert acked and got, "bystander round trip incomplete"
        assert self.r.ping(), "the bystander lost its connection"


@pytest.fixture
def env(broker):
    by = Bystander(broker.port)
    yield broker, by
    by.check()
    assert broker.proc.poll() is None, "moatd died"


def outcome(r, timeout=5):
    """Waits for the broker to close r: returns the packets it sent first; fails if it stays."""
    closed, pkts = r.wait_closed(timeout)
    assert closed, "the connection stayed open; got %r" % (pkts,)
    return pkts


def assert_disconnect(pkts, version, reason):
    if version == 5:
        assert [(p[0], parse_reason(*p, 5)[1]) for p in pkts] == [(0xE0, reason)], \
            "want DISCONNECT 0x%02x, got %r" % (reason, pkts)
    else:
        assert pkts == [], "3.1.1: want a plain close, got %r" % (pkts,)


def after_connect(env, version, data, reason):
    """Connects, sends data, expects DISCONNECT reason (5.0) or a close (3.1.1)."""
    b, by = env
    r = raw_session(b.port, version, uniq("bad"))
    r.send_quiet(data)
    assert_disconnect(outcome(r), version, reason)
    by.check()


V = [4, 5]


def pub(topic, payload=b"x", qos=0, pid=1, version=5, props_=b"", first=None):
    p = publish_packet(topic, payload, qos, pid, version=version, props=props_)
    if first is not None:
        p = bytes([first]) + p[1:]
    return p


# ---- class 1: fixed header ----

@pytest.mark.parametrize("version", V)
@pytest.mark.parametrize("name,data", [
    ("type0", b"\x00\x00"),
    ("pingreq-flags", b"\xc1\x00"),
    ("subscribe-flags", b"\x80\x06\x00\x01\x00\x01a\x00"),
    ("pubrel-flags", b"\x60\x02\x00\x01"),
    ("disconnect-flags", b"\xe2\x00"),
    ("publish-qos3", b"\x36\x06\x00\x01a\x00\x01\x00"),
    ("dup-qos0", b"\x38\x04\x00\x01a\x00"),
])
def test_fixed_header(env, version, name, data):
    """Reserved type 0, flags not as fixed [MQTT-2.1.3-1], QoS 3 [MQTT-3.3.1-4], DUP with
    QoS 0 [MQTT-3.3.1-2]: Malformed Packet."""
    if version == 4 and name in ("publish-qos3", "dup-qos0"):
        data = data[:1] + bytes([data[1] - 1]) + data[2:-1]  # no property length in 3.1.1
    if version == 4 and name == "subscribe-flags":
        data = b"\x80\x06\x00\x01\x00\x01a\x00"
    if version == 5 and name == "subscribe-flags":
        data = b"\x80\x07\x00\x01\x00\x00\x01a\x00"
    after_connect(env, version, data, 0x81)


def test_auth_in_311(env):
    after_connect(env, 4, b"\xf0\x00", 0)


# ---- class 2: remaining length ----

@pytest.mark.parametrize("version", V)
@pytest.mark.parametrize("name,data", [
    ("five-bytes", b"\x30\xff\xff\xff\xff\x01"),
    ("non-minimal", b"\xc0\x80\x00"),
    ("puback-too-short", b"\x40\x01\x00"),
    ("publish-too-short", b"\x30\x01\x00"),
    ("topic-past-end", b"\x30\x05\x00\x10abc"),
    ("subscribe-filter-past-end", None),
])
def test_remaining_length(env, version, name, data):
    """Remaining Length over 4 bytes or not minimal [MQTT-1.5.5-1], fields past the end of
    the packet: Malformed Packet."""
    if name == "subscribe-filter-past-end":
        body = b"\x00\x01" + (b"\x00" if version == 5 else b"") + b"\x00\x09ab\x01"
        data = packet(0x82, body)
    after_connect(env, version, data, 0x81)


def test_partial_packet_then_close(env):
    """A packet announced longer than what arrives, then the peer goes: nothing breaks."""
    b, by = env
    r = raw_session(b.port, 5, uniq())
    r.send(b"\x30\x80\x08" + b"\x00\x03abc" + b"x" * 100)
    time.sleep(0.2)
    r.close()
    by.check()


# ---- class 3: order and state ----

@pytest.mark.parametrize("data", [
    publish_packet("a", b"x"), b"\xc0\x00", subscribe_packet(1, [("a", 0)]),
    b"\xe0\x00", b"\x20\x02\x00\x00", b"\x00\x00"])
def test_first_packet_not_connect(env, data):
    """The first packet must be CONNECT [MQTT-3.1.0-1]: the connection is closed, with
    nothing sent (there is no CONNACK or DISCONNECT to send before CONNECT)."""
    b, by = env
    r = Raw(b.port)
    r.send(data)
    assert outcome(r) == []
    by.check()


@pytest.mark.parametrize("version", V)
def test_second_connect(env, version):
    """A second CONNECT is a Protocol Error [MQTT-3.1.0-2]."""
    after_connect(env, version, connect_packet(uniq(), version), 0x82)


@pytest.mark.parametrize("version", V)
@pytest.mark.parametrize("name", ["connack", "suback", "unsuback", "pingresp"])
def test_server_packets_from_client(env, version, name):
    """Packets only a Server sends (CVE-2021-28166): Protocol Error."""
    data = {
        "connack": b"\x20\x02\x00\x00" if version == 4 else b"\x20\x03\x00\x00\x00",
        "suback": b"\x90\x03\x00\x01\x00" if version == 4 else b"\x90\x04\x00\x01\x00\x00",
        "unsuback": b"\xb0\x02\x00\x01" if version == 4 else b"\xb0\x04\x00\x01\x00\x00",
        "pingresp": b"\xd0\x00",
    }[name]
    after_connect(env, version, data, 0x82)


@pytest.mark.parametrize("version", V)
def test_unsolicited_acks(env, version):
    """Acknowledgements for packet ids not in flight: PUBREL gets PUBCOMP 0x92 (Packet
    Identifier not found, 5.0) [MQTT-4.3.3-?], PUBREC gets PUBREL 0x92; PUBACK and PUBCOMP are
    ignored; the connection stays."""
    b, by = env
    r = raw_session(b.port, version, uniq())
    r.send(ack_packet(PUBREL, 77, version))
    first, body = r.expect(7)
    assert first == 0x70
    pid, reason, _ = parse_reason(first, body, version)
    assert pid == 77 and reason == (0x92 if version == 5 else 0)
    r.send(ack_packet(PUBREC, 78, version))
    first, body = r.expect(6)
    assert first == 0x62
    pid, reason, _ = parse_reason(first, body, version)
    assert pid == 78 and reason == (0x92 if version == 5 else 0)
    r.send(ack_packet(PUBACK, 79, version))
    r.send(ack_packet(PUBCOMP, 80, version))
    assert r.ping()
    assert r.skipped == []
    by.check()


@pytest.mark.parametrize("version", V)
def test_wrong_kind_of_ack(env, version):
    """PUBACK for a QoS 2 delivery / PUBCOMP before PUBREC: the broker may close the
    connection (Protocol Error) but must keep the session and everyone else intact."""
    b, by = env
    t = uniq()
    r = raw_session(b.port, version, uniq())
    r.subscribe([(t, 2)])
    with clients(b.port) as mk:
        p = mk(client_id=uniq(), version=4)
        p.connect()
        p.publish(t, b"x", 2)
    m = Publish(*r.expect(3), version)
    r.send(ack_packet(PUBACK, m.pid, version))
    closed, pkts = r.wait_closed(1.0)
    if closed:
        assert_disconnect(pkts, version, 0x82)
    else:
        assert r.ping()
    by.check()


def test_auth_without_method(env):
    """AUTH when CONNECT had no Authentication Method: Protocol Error (section 4.12)."""
    after_connect(env, 5, b"\xf0\x00", 0x82)
    after_connect(env, 5, b"\xf0\x02\x18\x00", 0x82)


def test_connect_with_auth_method(env):
    """No enhanced authentication yet: CONNACK 0x8C (Bad authentication method)."""
    b, by = env
    r = Raw(b.port)
    r.send(connect_packet(uniq(), 5, props=props(auth_method="SCRAM-SHA-1")))
    pkts = outcome(r)
    assert len(pkts) == 1 and parse_connack(pkts[0][1], 5)[1] == 0x8C
    by.check()


@pytest.mark.parametrize("version", V)
def test_subscribe_unsubscribe_orderings(env, version):
    """Shared and plain subscriptions on the same filter, subscribed and unsubscribed in
    every order by several sessions (the CVE-2024-8376 kind): deliveries follow what is left."""
    b, by = env
    t = uniq()
    f = t + "/+"
    rs = [raw_session(b.port, version, uniq("c%d" % i)) for i in range(3)]
    share = "$share/g/" + f
    ops = [(0, "s", f), (0, "s", share), (1, "s", share), (1, "s", f), (0, "u", f),
           (2, "s", share), (1, "u", share), (0, "u", share), (2, "s", f), (0, "s", f),
           (2, "u", share), (2, "s", share), (1, "u", f), (1, "s", share)]
    pid = 1
    for i, op, flt in ops:
        pid += 1
        if op == "s":
            rs[i].subscribe([(flt, 1)], pid=pid)
        else:
            rs[i].send(unsubscribe_packet(pid, [flt], version))
            rs[i].expect(11)
    # left: 0 plain; 1 shared; 2 plain + shared
    with clients(b.port) as mk:
        p = mk(client_id=uniq(), version=4)
        p.connect()
        for n in range(4):
            p.publish("%s/%d" % (t, n), b"%d" % n, 1)
    plain = [sorted(m.payload for m in r.publishes(4, timeout=2)) for r in rs]
    extra = [r.publishes(8, timeout=0.5) for r in rs]
    total = [len(plain[i]) + len(extra[i]) for i in range(3)]
    # 0 gets 4 (plain); 1 and 2 share the group's 4; 2 also gets its own 4 (plain): a shared
    # subscription's copy is separate from the session's plain one (4.8.2)
    assert total[0] == 4, total
    assert total[1] + total[2] == 8 and total[2] >= 4, total
    for r in rs:
        r.close()
    by.check()


def test_takeover_mid_flow(env):
    """A session taken over while QoS 1 and 2 messages are in flight in both directions: the
    new connection gets every unacknowledged message again, the old one is closed."""
    b, by = env
    t = uniq()
    cid = uniq("flow")
    a = raw_session(b.port, 5, cid, clean=False, props=props(session_expiry=60))
    a.subscribe([(t, 2)])
    # inbound QoS 2 from a, no PUBREL yet
    a.send(publish_packet(t + "/in", b"in", 2, 500, version=5))
    a.expect(5)
    with clients(b.port) as mk:
        p = mk(client_id=uniq(), version=5)
        p.connect()
        for n in range(5):
            p.publish(t, b"%d" % n, 1 + n % 2)
    got = a.publishes(5, ack=False)
    assert len(got) == 5
    # acknowledge the first two halfway
    a.send(ack_packet(PUBACK if got[0].qos == 1 else PUBREC, got[0].pid, 5))
    n2 = raw_session(b.port, 5, cid, clean=False, props=props(session_expiry=60))
    assert n2.session_present
    closed, pkts = a.wait_closed(5)
    assert closed
    again = n2.publishes(4)
    again += n2.publishes(1, timeout=0.5)
    # the first one was acknowledged (PUBACK: done; PUBREC: only its PUBREL is resent)
    assert sorted(m.payload for m in again) == sorted(m.payload for m in got[1:])
    assert all(m.dup for m in again)
    # the inbound QoS 2 id is still known: PUBREL completes it
    n2.send(ack_packet(PUBREL, 500, 5))
    deadline = time.time() + 5
    while time.time() < deadline:
        p = n2.recv_packet(deadline - time.time())
        assert p is not None
        if p[0] == 0x70:
            assert parse_reason(*p, 5)[:2] == (500, 0)
            break
    n2.send(disconnect_packet(0, props(session_expiry=0)))
    by.check()


# ---- class 4: CONNECT fields ----

def connect_outcome(b, data):
    r = Raw(b.port)
    r.send_quiet(data)
    return outcome(r)


def assert_connack(pkts, version, code):
    """A CONNACK refusing with code, then the close. 3.1.1 code None means a plain close."""
    if version == 4 and code is None:
        assert pkts == [], pkts
        return
    assert len(pkts) == 1 and pkts[0][0] == 0x20, pkts
    if version == 5:
        assert parse_connack(pkts[0][1], 5)[1] == code, "want CONNACK 0x%02x, got %r" % (code, pkts)
    else:
        assert pkts[0][1] == bytes([0, code]), pkts


def raw_connect_body(name, level, flags, keepalive=60, props_=None, payload=None):
    body = mqtt_str(name) + bytes([level, flags]) + struct.pack("!H", keepalive)
    if props_ is not None:
        body += varint(len(props_)) + props_
    body += payload if payload is not None else mqtt_str(uniq())
    return packet(0x10, body)


def test_bad_protocol_name(env):
    """An unknown protocol name: the Server MAY close without CONNACK [MQTT-3.1.2-1]."""
    b, by = env
    assert connect_outcome(b, raw_connect_body("MQTX", 4, 2)) == []
    assert connect_outcome(b, raw_connect_body("mqtt", 5, 2, props_=b"")) == []
    by.check()


@pytest.mark.parametrize("name,level", [("MQTT", 6), ("MQTT", 3), ("MQTT", 0), ("MQIsdp", 4),
                                        ("MQTT", 255)])
def test_unsupported_protocol_level(env, name, level):
    """An unsupported level: CONNACK 0x01 (unacceptable protocol version) then close
    [MQTT-3.1.2-2] (3.1.1). A level the broker does not know cannot be answered in 5.0 form,
    so the 3.1.1 CONNACK is the one every client understands."""
    b, by = env
    pkts = connect_outcome(b, raw_connect_body(name, level, 2))
    assert pkts == [(0x20, b"\x00\x01")]
    by.check()


@pytest.mark.parametrize("version", V)
@pytest.mark.parametrize("name,flags", [
    ("reserved-bit", 0x03), ("will-qos3", 0x1E), ("will-qos-no-will", 0x0A),
    ("will-retain-no-will", 0x22), ("will-qos2-retain-no-will", 0x32)])
def test_connect_flags(env, version, name, flags):
    """Reserved flag [MQTT-3.1.2-3], will QoS 3 [MQTT-3.1.2-12], will QoS or retain without
    the will flag [MQTT-3.1.2-11], [MQTT-3.1.2-13]: Malformed Packet (5.0 CONNACK 0x81)."""
    b, by = env
    payload = mqtt_str(uniq())
    if flags & 0x04:
        payload += (b"\x00" if version == 5 else b"") + mqtt_str("w/t") + mqtt_str("m")
    data = raw_connect_body("MQTT", version, flags, props_=b"" if version == 5 else None,
                            payload=payload)
    assert_connack(connect_outcome(b, data), version, 0x81 if version == 5 else None)
    by.check()


def test_password_without_username_311(env):
    """3.1.1: the Password Flag needs the User Name Flag [MQTT-3.1.2-22]: close."""
    b, by = env
    data = raw_connect_body("MQTT", 4, 0x42, payload=mqtt_str(uniq()) + mqtt_str("pw"))
    assert connect_outcome(b, data) == []
    by.check()


def test_password_without_username_5_allowed(env):
    """5.0 allows a password without a user name (3.1.2.9)."""
    b, by = env
    r = raw_session(b.port, 5, uniq(), password="pw")
    assert r.ping()
    by.check()


@pytest.mark.parametrize("version", [3, 4])
def test_empty_client_id_needs_clean_session(env, version):
    """3.1.1: an empty client id with clean session 0 gets CONNACK 0x02 (identifier rejected)
    [MQTT-3.1.3-8]; 3.1 requires a client id of 1 to 23 characters."""
    b, by = env
    pkts = connect_outcome(b, connect_packet("", version, clean=version == 3))
    assert pkts == [(0x20, b"\x00\x02")]
    by.check()


@pytest.mark.parametrize("version", V)
def test_will_topic_invalid(env, version):
    b, by = env
    for topic in ("a/+", "#", ""):
        data = connect_packet(uniq(), version, will=(topic, "m", 0, False))
        assert_connack(connect_outcome(b, data), version, 0x90 if version == 5 else None)
    by.check()


@pytest.mark.parametrize("version", V)
def test_client_id_with_wildcards_and_slashes(env, version):
    """`+ # /` in a client id or user name are just characters (CVE-2017-7650 was ACL
    substitution): accepted, and the session works."""
    b, by = env
    cid = "a/+/#-" + uniq()
    r = raw_session(b.port, version, cid, username="u/+/#")
    t = uniq()
    r.subscribe([(t, 0)])
    r.publish(t, b"x", 0)
    assert [m.payload for m in r.publishes(1)] == [b"x"]
    r2 = raw_session(b.port, version, cid)
    assert r.wait_closed(5)[0]
    r2.close()
    by.check()


@pytest.mark.parametrize("version", V)
def test_huge_keepalive(env, version):
    b, by = env
    r = raw_session(b.port, version, uniq(), keepalive=65535)
    assert r.ping()
    by.check()


@pytest.mark.parametrize("version", V)
def test_anonymous_refused(make_broker, version):
    """allow_anonymous false with no authentication backend: CONNACK 0x87 (Not authorized)
    in 5.0, 0x05 in 3.1.1 [MQTT-3.2.2-?]."""
    b = make_broker(anonymous=False)
    for kw in ({}, {"username": "u", "password": "p"}):
        pkts = connect_outcome(b, connect_packet(uniq(), version, **kw))
        assert_connack(pkts, version, 0x87 if version == 5 else 0x05)


@pytest.mark.parametrize("version", V)
def test_connect_truncated_or_trailing(env, version):
    b, by = env
    good = connect_packet(uniq(), version)
    # one byte short (the client id runs past the end) and one byte too many
    short = packet(0x10, good[2:-1])
    long_ = packet(0x10, good[2:] + b"\x00")
    for data in (short, long_):
        assert_connack(connect_outcome(b, data), version, 0x81 if version == 5 else None)
    by.check()


# ---- class 5: strings ----

BAD_UTF8 = [b"a\xffb", b"a\x00b", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe0\x80\xaf",
            b"\xf4\x90\x80\x80", b"a\xc3"]


@pytest.mark.parametrize("version", V)
@pytest.mark.parametrize("bad", BAD_UTF8, ids=lambda x: x.hex())
def test_bad_utf8_topic(env, version, bad):
    """Topic not well-formed UTF-8, U+0000, surrogates, overlong forms, beyond U+10FFFF,
    truncated [MQTT-1.5.4-1], [MQTT-1.5.4-2]: Malformed Packet."""
    after_connect(env, version, pub(bad, version=version), 0x81)


@pytest.mark.parametrize("version", V)
def test_bad_utf8_elsewhere(env, version):
    """Bad UTF-8 in a filter, in a client id, in a user property."""
    bad = b"\xed\xb0\x80"
    after_connect(env, version, subscribe_packet(1, [(b"a/" + bad, 0)], version), 0x81)
    b, by = env
    assert_connack(connect_outcome(b, connect_packet(b"id" + bad, version)), version,
                   0x81 if version == 5 else None)
    if version == 5:
        up = bytes([0x26]) + mqtt_str(b"k" + bad) + mqtt_str("v")
        after_connect(env, 5, pub("a", version=5, props_=up), 0x81)


@pytest.mark.parametrize("version", V)
def test_string_length_past_packet(env, version):
    """A string whose length runs past the packet (CVE-2017-7653)."""
    body = b"\x00\x05ab"
    after_connect(env, version, packet(0x30, body), 0x81)


# ---- class 6: topics and filters ----

@pytest.mark.parametrize("version", V)
def test_empty_topic(env, version):
    """Empty topic without a Topic Alias: 3.1.1 [MQTT-4.7.3-1] closes; 5.0 Protocol Error
    (3.3.2.1 / 3.3.2.3.4)."""
    after_connect(env, version, pub("", version=version), 0x82)


@pytest.mark.parametrize("version", V)
@pytest.mark.parametrize("topic", ["a/+", "a/#", "#", "+", "a+b", "a/b#"])
def test_wildcard_in_publish_topic(env, version, topic):
    """The Topic Name in a PUBLISH MUST NOT contain wildcards [MQTT-3.3.2-2]: 0x90."""
    after_connect(env, version, pub(topic, version=version), 0x90)


@pytest.mark.parametrize("version", V)
@pytest.mark.parametrize("flt", ["a#", "a/#/b", "a+", "+a", "a/b+/c", "##", "",
                                 "$share//t", "$share/+/t", "$share/g#/t", "$share/g",
                                 "$share/g/", "$share/g/a#"])
def test_bad_filter(env, version, flt):
    """Wildcards not on their own level [MQTT-4.7.1-1/2], empty filter [MQTT-4.7.3-1], bad
    $share/ (empty, wildcard or missing group or filter [MQTT-4.8.2-1/2]): Malformed."""
    after_connect(env, version, subscribe_packet(1, [(flt, 1)], version), 0x81)


def test_no_local_on_shared(env):
    """No Local on a Shared Subscription is a Protocol Error [MQTT-3.8.3-4]."""
    after_connect(env, 5, subscribe_packet(1, [("$share/g/a", sub_opts(1, no_local=True))], 5),
                  0x82)


@pytest.mark.parametrize("version", V)
def test_longest_topic(env, version):
    """A 65535-byte topic (CVE-2019-11779 area) is valid: subscribed, published, retained,
    delivered."""
    b, by = env
    t = (uniq() + "/" + "x" * 70000)[:65535]
    s = raw_session(b.port, version, uniq())
    s.subscribe([(t, 1)])
    p = raw_session(b.port, version, uniq())
    p.publish(t, b"long", 1, retain=True)
    got = s.publishes(1)
    assert [(m.topic, m.payload) for m in got] == [(t, b"long")]
    s2 = raw_session(b.port, version, uniq())
    s2.subscribe([(t.split("/")[0] + "/#", 1)])
    got = s2.publishes(1)
    assert got and got[0].topic == t and got[0].retain
    p.publish(t, b"", 1, retain=True)
    by.check()


def test_deep_topics(env):
    """Very deep topics and filters (32767 levels): matched, retained and freed without
    recursion blowing the stack."""
    b, by = env
    deep = "/".join(["d"] * 32767)
    s = raw_session(b.port, 5, uniq())
    s.subscribe([("#", 0)], pid=1)
    s.subscribe([("/".join(["+"] * 32767), 0)], pid=2)
    s.subscribe([(deep, 0)], pid=3)
    s.subscribe([("/".join(["d"] * 32766) + "/#", 0)], pid=4)
    p = raw_session(b.port, 5, uniq())
    p.publish(deep, b"deep", 1, retain=True)
    p.publish("/".join(["e"] * 32767), b"deep2", 1, retain=True)
    got = s.publishes(2)
    assert sorted(m.payload for m in got) == [b"deep", b"deep2"]
    s2 = raw_session(b.port, 5, uniq())
    s2.subscribe([("d/#", 0)])
    got = s2.publishes(1)
    assert got and got[0].payload == b"deep"
    by.check()
    # both retained messages stay until shutdown: freeing them is part of the test


# ---- class 7: SUBSCRIBE / UNSUBSCRIBE ----

@pytest.mark.parametrize("version", V)
def test_empty_subscribe_unsubscribe(env, version):
    """SUBSCRIBE or UNSUBSCRIBE with no filter: Protocol Error [MQTT-3.8.3-3],
    [MQTT-3.10.3-2]."""
    for first in (0x82, 0xA2):
        body = b"\x00\x01" + (b"\x00" if version == 5 else b"")
        after_connect(env, version, packet(first, body), 0x82)


@pytest.mark.parametrize("version", V)
@pytest.mark.parametrize("name", ["qos3", "reserved-bits", "retain-handling-3"])
def test_bad_subscription_options(env, version, name):
    """Requested QoS 3, reserved option bits [MQTT-3.8.3-5] (3.1.1: bits above the QoS
    [MQTT-3-8.3-4]): Malformed; Retain Handling 3: Protocol Error."""
    if version == 4 and name == "retain-handling-3":
        opts, reason = 0x30, 0x81
    else:
        opts, reason = {"qos3": (3, 0x81), "reserved-bits": (0x40 if version == 5 else 0x04, 0x81),
                        "retain-handling-3": (0x31, 0x82)}[name]
    after_connect(env, version, subscribe_packet(1, [("a/b", opts)], version), reason)


@pytest.mark.parametrize("version", V)
@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe", "publish-qos1", "publish-qos2"])
def test_packet_id_zero(env, version, kind):
    """Packet identifier 0 [MQTT-2.2.1-3]: Protocol Error."""
    data = {
        "subscribe": subscribe_packet(0, [("a", 0)], version),
        "unsubscribe": unsubscribe_packet(0, ["a"], version),
        "publish-qos1": pub("a", qos=1, pid=0, version=version),
        "publish-qos2": pub("a", qos=2, pid=0, version=version),
    }[kind]
    after_connect(env, version, data, 0x82)


def test_subscription_identifier_zero(env):
    """Subscription Identifier 0 is a Protocol Error (3.8.2.1.2)."""
    after_connect(env, 5, subscribe_packet(1, [("a", 0)], 5, props(subscription_id=0)), 0x82)


def test_subscription_identifier_in_publish(env):
    """A PUBLISH from a client MUST NOT contain a Subscription Identifier [MQTT-3.3.4-6]."""
    after_connect(env, 5, pub("a", version=5, props_=props(subscription_id=5)), 0x82)


# ---- class 8: QoS flows ----

def test_repeated_qos2_id_without_pubrel(env):
    """The same QoS 2 packet id over and over without PUBREL (CVE-2023-28366): PUBREC each
    time, one delivery, no growth."""
    b, by = env
    t = uniq()
    s = raw_session(b.port, 5, uniq())
    s.subscribe([(t, 2)])
    r = raw_session(b.port, 5, uniq())
    rss0 = b.rss_kb()
    for chunk in range(10):
        r.send(pub(t, b"same", 2, 9, version=5) * 200)
        for _ in range(200):
            assert parse_reason(*r.expect(5), 5)[:2] == (9, 0)
    assert b.rss_kb() - rss0 < 20000
    r.send(ack_packet(PUBREL, 9, 5))
    r.expect(7)
    got = s.publishes(1)
    got += s.publishes(1, timeout=0.5)
    assert [m.payload for m in got] == [b"same"]
    by.check()


def test_many_qos2_ids_without_pubrel(make_broker):
    """3.1.1 has no Receive Maximum: thousands of distinct QoS 2 ids left open are held in
    a bounded structure and freed at disconnect."""
    b = make_broker()
    by = Bystander(b.port)
    r = raw_session(b.port, 4, uniq())
    data = b"".join(pub("q2", b"", 2, pid, version=4) for pid in range(1, 5001))
    r.send(data)
    for _ in range(5000):
        r.expect(5)
    r.send(b"".join(ack_packet(PUBREL, pid, 4) for pid in range(1, 5001, 2)))
    for _ in range(2500):
        r.expect(7)
    r.close()
    by.check()


# ---- class 9: properties ----

@pytest.mark.parametrize("where", ["publish", "subscribe", "disconnect", "puback"])
def test_duplicate_property(env, where):
    """A property that may appear once, twice: Protocol Error (2.2.2.2)."""
    b, by = env
    if where == "publish":
        data = pub("a", version=5, props_=props(content_type="a") + props(content_type="b"))
    elif where == "subscribe":
        data = subscribe_packet(1, [("a", 0)], 5,
                                props(subscription_id=1) + props(subscription_id=2))
    elif where == "disconnect":
        data = disconnect_packet(0, props(reason_string="a") + props(reason_string="b"))
    else:
        data = ack_packet(PUBACK, 1, 5, 0, props(reason_string="a") + props(reason_string="b"))
    after_connect(env, 5, data, 0x82)


def test_duplicate_property_in_connect(env):
    b, by = env
    data = connect_packet(uniq(), 5, props=props(session_expiry=1) + props(session_expiry=2))
    assert_connack(connect_outcome(b, data), 5, 0x82)
    data = connect5_packet(uniq(), will=("w", "m", 0, False),
                           will_props=props(will_delay=1) + props(will_delay=1))
    assert_connack(connect_outcome(b, data), 5, 0x82)
    by.check()


@pytest.mark.parametrize("name,data", [
    ("session-expiry-in-publish", b"\x11\x00\x00\x00\x01"),
    ("will-delay-in-publish", b"\x18\x00\x00\x00\x01"),
    ("receive-max-in-publish", b"\x21\x00\x01"),
    ("unknown-0x7f", b"\x7f\x00"),
    ("id-zero", b"\x00\x00"),
    ("varint-id-5-bytes", b"\x81\x80\x80\x80\x00"),
])
def test_property_not_allowed(env, name, data):
    """A property id unknown or not valid for the packet (CVE-2023-3592): Malformed."""
    after_connect(env, 5, pub("a", version=5, props_=data), 0x81)


def test_property_not_allowed_elsewhere(env):
    b, by = env
    after_connect(env, 5, subscribe_packet(1, [("a", 0)], 5, props(topic_alias=1)), 0x81)
    data = connect_packet(uniq(), 5, props=props(will_delay=5))
    assert_connack(connect_outcome(b, data), 5, 0x81)
    data = connect5_packet(uniq(), will=("w", "m", 0, False), will_props=props(session_expiry=5))
    assert_connack(connect_outcome(b, data), 5, 0x81)


@pytest.mark.parametrize("name,body", [
    ("length-past-packet", b"\x00\x01a" + b"\x0a\x01\x01"),
    ("value-past-block", b"\x00\x01a" + b"\x02\x02\x00\x00" + b"payload"),
    ("string-past-block", b"\x00\x01a" + b"\x03\x03\x00\x05ab"),
])
def test_property_overrun(env, name, body):
    after_connect(env, 5, packet(0x30, body), 0x81)


def test_many_user_properties(env):
    """Tens of thousands of User Properties (CVE-2021-41039): accepted and forwarded in
    order, and the broker stays responsive."""
    b, by = env
    t = uniq()
    s = raw_session(b.port, 5, uniq())
    s.subscribe([(t, 0)])
    ups = [("k%d" % (i % 10), "") for i in range(30000)]
    r = raw_session(b.port, 5, uniq())
    r.publish(t, b"many", 1, props=props(user_property=ups))
    got = s.publishes(1, timeout=10)
    assert got and got[0].props["user_property"] == ups
    by.check()
    # and in CONNECT, before authentication (within preauth_max_packet_size)
    r2 = raw_session(b.port, 5, uniq(), props=props(user_property=[("", "")] * 12000))
    assert r2.ping()


@pytest.mark.parametrize("name,pr", [
    ("request-problem-info-2", props(request_problem_info=2)),
    ("request-response-info-2", props(request_response_info=2)),
    ("receive-maximum-0", props(receive_maximum=0)),
    ("maximum-packet-size-0", props(maximum_packet_size=0)),
    ("auth-data-without-method", props(auth_data=b"x")),
])
def test_connect_property_values(env, name, pr):
    """Out-of-range values in CONNECT properties: Protocol Error (3.1.2.11)."""
    b, by = env
    assert_connack(connect_outcome(b, connect_packet(uniq(), 5, props=pr)), 5, 0x82)
    by.check()


@pytest.mark.parametrize("name,pr", [
    ("payload-format-2", props(payload_format=2)),
    ("topic-alias-in-range-but-response-topic-wildcard", props(response_topic="a/#")),
])
def test_publish_property_values(env, name, pr):
    after_connect(env, 5, pub("a", version=5, props_=pr), 0x82)


def test_payload_format_not_utf8(env):
    """Payload Format Indicator 1 with a payload that is not UTF-8: 0x99 (Payload format
    invalid) [MQTT-3.3.2-4 permits the check]."""
    after_connect(env, 5, pub("a", b"\xff\xfe", version=5, props_=props(payload_format=1)), 0x99)


def test_session_expiry_in_disconnect_after_zero(env):
    """Session Expiry in DISCONNECT when CONNECT had 0: Protocol Error [MQTT-3.14.2-2]."""
    after_connect(env, 5, disconnect_packet(0, props(session_expiry=30)), 0x82)


def test_will_delay_longer_than_session(env):
    """Will Delay Interval longer than the Session Expiry Interval (CVE-2019-11778): the will
    comes when the session ends; nothing is freed twice."""
    b, by = env
    t = uniq()
    s = raw_session(b.port, 5, uniq())
    s.subscribe([(t, 0)])
    for i in range(5):
        r = Raw(b.port)
        r.send(connect5_packet(uniq("w"), props=props(session_expiry=i % 2),
                               will=(t, "w%d" % i, 0, False),
                               will_props=props(will_delay=100 + i)))
        r.expect(2)
        r.close()
    got = s.publishes(5, timeout=6)
    assert sorted(m.payload for m in got) == [b"w%d" % i for i in range(5)]
    by.check()
