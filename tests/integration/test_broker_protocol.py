"""The broker core against real clients: paho-mqtt (3.1, 3.1.1, 5.0), mosquitto_pub/sub and
raw sockets where a client library hides what matters (issue 3, "Protocol").

Every test runs its own moatd on 127.0.0.1 (fixtures from moatlib); topics are unique per
test. Waits are bounded; nothing asserts how fast the broker is, only what it does.
Spec statements are quoted as [MQTT-x.y.z-n] from MQTT 5.0 unless marked 3.1.1.
"""
import re
import subprocess
import threading
import time
import uuid

import pytest

from moatlib import (PUBACK, PUBCOMP, PUBREC, PUBREL, Publish, Raw, ack_packet,  # noqa: F401
                     broker, clients, connect_packet, disconnect_packet, make_broker,
                     parse_connack, parse_reason, props, publish_packet, raw_session,
                     wait_for, watchdog)


def uniq(name="t"):
    return "%s-%s" % (name, uuid.uuid4().hex[:8])


def payloads(msgs):
    return [m.payload for m in msgs]


# ---- connect, publish, subscribe at every QoS, every version ----

@pytest.mark.parametrize("pubv,subv", [(3, 3), (4, 4), (5, 5), (3, 5), (5, 3), (4, 5), (5, 4)])
def test_qos_levels_both_directions(broker, pubv, subv):
    """Each QoS published is delivered at min(published, subscribed) [MQTT-3.8.4-8]."""
    t = uniq()
    with clients(broker.port) as mk:
        sub = mk(client_id=uniq("sub"), version=subv)
        sub.connect()
        for sq in range(3):
            assert sub.subscribe("%s/s%d" % (t, sq), sq) == [sq]
        pub = mk(client_id=uniq("pub"), version=pubv)
        pub.connect()
        for pq in range(3):
            for sq in range(3):
                pub.publish("%s/s%d" % (t, sq), b"%d%d" % (pq, sq), pq)
        msgs = sub.wait_messages(9)
        assert len(msgs) == 9, payloads(msgs)
        got = {m.payload: (m.topic, m.qos, m.retain) for m in msgs}
        for pq in range(3):
            for sq in range(3):
                assert got[b"%d%d" % (pq, sq)] == ("%s/s%d" % (t, sq), min(pq, sq), False)
        time.sleep(0.2)
        assert len(sub.messages) == 9


class MosqSub:
    """mosquitto_sub in the background, ready once its SUBACK is printed."""

    def __init__(self, port, topic, version, qos=2, extra=()):
        self.p = subprocess.Popen(
            ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", str(qos),
             "-V", version, "-d", "-F", "MSG|%t|%q|%r|%p", "-i", uniq("msub")] + list(extra),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.ready = threading.Event()
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.ready.wait(10), "mosquitto_sub got no SUBACK: %r" % self.lines

    def _read(self):
        for line in self.p.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
            if "SUBACK" in line:
                self.ready.set()

    def messages(self, n, timeout=10):
        def msgs():
            return [ln.split("|", 4)[1:] for ln in self.lines if ln.startswith("MSG|")]
        with self.cond:
            self.cond.wait_for(lambda: len(msgs()) >= n, timeout)
            return msgs()

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()


def mosq_pub(port, topic, msg, version, qos=0, extra=()):
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic,
                        "-m", msg, "-q", str(qos), "-V", version] + list(extra),
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("version", ["31", "311", "5"])
def test_mosquitto_clients_all_qos(broker, version):
    """mosquitto_pub at QoS 0/1/2 to mosquitto_sub at QoS 2, same protocol version."""
    t = uniq()
    s = MosqSub(broker.port, t + "/#", version)
    try:
        for q in range(3):
            mosq_pub(broker.port, "%s/%d" % (t, q), "m%d" % q, version, q)
        got = s.messages(3)
        assert sorted(got) == [["%s/%d" % (t, q), str(q), "0", "m%d" % q] for q in range(3)]
    finally:
        s.stop()


def test_mosquitto_and_paho_mixed_versions(broker):
    """mosquitto_sub 3.1 and 5.0 and a paho 3.1.1 client on one topic, publishers of every
    version: each subscriber gets each message once."""
    t = uniq()
    subs = [MosqSub(broker.port, t, "31", qos=1), MosqSub(broker.port, t, "5", qos=2)]
    try:
        with clients(broker.port) as mk:
            p = mk(client_id=uniq(), version=4)
            p.connect()
            p.subscribe(t, 2)
            mosq_pub(broker.port, t, "from31", "31", 1)
            mosq_pub(broker.port, t, "from311", "311", 2)
            mosq_pub(broker.port, t, "from5", "5", 2)
            msgs = p.wait_messages(3)
            assert sorted(payloads(msgs)) == [b"from31", b"from311", b"from5"]
            assert sorted(m.qos for m in msgs) == [1, 2, 2]
        assert sorted(m[3] for m in subs[0].messages(3)) == ["from31", "from311", "from5"]
        assert sorted(m[1] for m in subs[0].messages(3)) == ["1", "1", "1"]
        assert sorted((m[3], m[1]) for m in subs[1].messages(3)) == [
            ("from31", "1"), ("from311", "2"), ("from5", "2")]
    finally:
        for s in subs:
            s.stop()


def test_mixed_versions_one_topic(broker):
    """3.1, 3.1.1 and 5.0 clients on one topic each receive what all of them publish."""
    t = uniq()
    with clients(broker.port) as mk:
        cs = [mk(client_id=uniq("v%d" % v), version=v) for v in (3, 4, 5)]
        for c in cs:
            c.connect()
            c.subscribe(t, 2)
        for c, q in zip(cs, (0, 1, 2)):
            c.publish(t, b"from%d" % c.version, q)
        for c in cs:
            msgs = c.wait_messages(3)
            assert sorted((m.payload, m.qos) for m in msgs) == [
                (b"from3", 0), (b"from4", 1), (b"from5", 2)], c.version


# ---- QoS 2: exactly once ----

@pytest.mark.parametrize("version", [4, 5])
def test_qos2_resent_publish_not_duplicated(broker, version):
    """A QoS 2 PUBLISH resent with DUP before PUBREL is acknowledged but not delivered again
    [MQTT-4.3.3-?: the receiver MUST NOT cause duplicate messages to be delivered to any
    onward recipients before PUBREL]; after PUBCOMP the packet id starts a new message."""
    t = uniq()
    sub = raw_session(broker.port, version, uniq("sub"))
    sub.subscribe([(t, 2)])
    pub = raw_session(broker.port, version, uniq("pub"))
    pub.send(publish_packet(t, b"one", 2, 7, version=version))
    pub.expect(5)
    for _ in range(3):
        pub.send(publish_packet(t, b"one", 2, 7, dup=True, version=version))
        pid, rc, _ = parse_reason(*pub.expect(5), version)
        assert pid == 7 and rc == 0
    pub.send(ack_packet(PUBREL, 7, version))
    assert parse_reason(*pub.expect(7), version)[:2] == (7, 0)
    pub.send(publish_packet(t, b"two", 2, 7, version=version))
    pub.expect(5)
    pub.send(ack_packet(PUBREL, 7, version))
    pub.expect(7)
    got = sub.publishes(2)
    assert [m.payload for m in got] == [b"one", b"two"]
    assert sub.publishes(1, timeout=0.5) == []


def test_qos2_many_messages_exactly_once(broker):
    t = uniq()
    with clients(broker.port) as mk:
        subs = [mk(client_id=uniq(), version=v) for v in (4, 5)]
        for s in subs:
            s.connect()
            s.subscribe(t, 2)
        pub = mk(client_id=uniq(), version=5)
        pub.connect()
        infos = [pub.c.publish(t, b"%d" % i, 2) for i in range(200)]
        for i in infos:
            i.wait_for_publish(10)
        for s in subs:
            msgs = s.wait_messages(200, 10)
            assert sorted(int(m.payload) for m in msgs) == list(range(200))
        time.sleep(0.3)
        for s in subs:
            assert len(s.messages) == 200


@pytest.mark.parametrize("version", [4, 5])
def test_qos2_pubrel_resent_after_reconnect(broker, version):
    """A subscriber that sent PUBREC and lost its connection gets PUBREL again, not the
    PUBLISH [MQTT-4.4.0-1]: the Server MUST resend unacknowledged PUBLISH and PUBREL packets
    when a session resumes."""
    t = uniq()
    cid = uniq("sub")
    kw = {"props": props(session_expiry=60)} if version == 5 else {}
    sub = raw_session(broker.port, version, cid, clean=False, **kw)
    sub.subscribe([(t, 2)])
    with clients(broker.port) as mk:
        pub = mk(client_id=uniq(), version=4)
        pub.connect()
        pub.publish(t, b"x", 2)
    m = Publish(*sub.expect(3), version)
    assert m.qos == 2 and not m.dup
    sub.send(ack_packet(PUBREC, m.pid, version))
    assert parse_reason(*sub.expect(6), version)[0] == m.pid
    sub.close()
    sub = raw_session(broker.port, version, cid, clean=False, **kw)
    assert sub.session_present
    first, body = sub.expect(6)
    assert first == 0x62 and parse_reason(first, body, version)[0] == m.pid
    sub.send(ack_packet(PUBCOMP, m.pid, version))
    assert sub.quiet(0.5) == []
    sub.close()


@pytest.mark.parametrize("version", [4, 5])
def test_qos2_inbound_state_survives_reconnect(broker, version):
    """The publisher's unfinished QoS 2 exchange belongs to its session [MQTT-4.1.0-?,
    section 4.1: "QoS 2 messages which have been received from the Client, but have not been
    completely acknowledged"]: a resent PUBLISH after a reconnect is not delivered again,
    its PUBREL completes it. With a clean session the id starts a new message."""
    t = uniq()
    sub = raw_session(broker.port, 5, uniq("sub"))
    sub.subscribe([(t, 2)])
    cid = uniq("pub")
    kw = {"props": props(session_expiry=60)} if version == 5 else {}
    pub = raw_session(broker.port, version, cid, clean=False, **kw)
    pub.send(publish_packet(t, b"once", 2, 42, version=version))
    pub.expect(5)
    pub.close()
    pub = raw_session(broker.port, version, cid, clean=False, **kw)
    assert pub.session_present
    pub.send(publish_packet(t, b"once", 2, 42, dup=True, version=version))
    assert parse_reason(*pub.expect(5), version)[:2] == (42, 0)
    pub.send(ack_packet(PUBREL, 42, version))
    assert parse_reason(*pub.expect(7), version)[:2] == (42, 0)
    got = sub.publishes(1)
    got += sub.publishes(1, timeout=0.5)
    assert [m.payload for m in got] == [b"once"]
    # clean session: nothing remembered, the same id is a new message
    pub.send(publish_packet(t, b"half", 2, 43, version=version))
    pub.expect(5)
    pub.close()
    pub = raw_session(broker.port, version, cid, clean=True)
    pub.send(publish_packet(t, b"half", 2, 43, version=version))
    pub.expect(5)
    pub.send(ack_packet(PUBREL, 43, version))
    pub.expect(7)
    got = sub.publishes(2)
    assert [m.payload for m in got] == [b"half", b"half"]


def test_no_matching_subscribers_reason(broker):
    """5.0: PUBACK/PUBREC 0x10 (No matching subscribers) when nobody matched; the QoS 2 flow
    still completes (0x10 is not an error). 3.1.1 acknowledgements carry no reason."""
    t = uniq()
    r = raw_session(broker.port, 5, uniq())
    assert r.publish(t + "/none", b"x", 1) == 0x10
    assert r.publish(t + "/none", b"x", 2, pid=2) == 0x10
    s = raw_session(broker.port, 4, uniq())
    s.subscribe([(t + "/some", 0)])
    assert r.publish(t + "/some", b"x", 1, pid=3) == 0
    r4 = raw_session(broker.port, 4, uniq())
    r4.send(publish_packet(t + "/none", b"x", 1, 9))
    assert r4.expect(4)[1] == b"\x00\x09"


# ---- retained messages ----

@pytest.mark.parametrize("version", [3, 4, 5])
def test_retained_set_replace_delete(broker, version):
    """The retained message is stored, replaced, and deleted by an empty payload
    [MQTT-3.3.1-6], [MQTT-3.3.1-10]; a new subscription gets it with RETAIN set
    [MQTT-3.3.1-9 (3.1.1 3.3.1-8)]."""
    t = uniq()
    with clients(broker.port) as mk:
        pub = mk(client_id=uniq(), version=version)
        pub.connect()
        pub.publish(t, b"first", 1, retain=True)
        pub.publish(t, b"second", 1, retain=True)
        s1 = mk(client_id=uniq(), version=version)
        s1.connect()
        s1.subscribe(t, 2)
        m = s1.get()
        assert (m.payload, m.retain, m.qos) == (b"second", True, 1)
        pub.publish(t, b"", 0, retain=True)
        m = s1.get()  # the delete is forwarded live as an ordinary message
        assert (m.payload, m.retain) == (b"", False)
        s2 = mk(client_id=uniq(), version=version)
        s2.connect()
        s2.subscribe(t, 2)
        assert s2.get(0.5) is None


@pytest.mark.parametrize("version,rap,flag", [(4, False, False), (5, False, False), (5, True, True)])
def test_retain_flag_on_live_delivery(broker, version, rap, flag):
    """Live delivery clears RETAIN [MQTT-3.3.1-12] (3.1.1: [MQTT-3.3.1-9]) unless the 5.0
    subscription has Retain As Published [MQTT-3.3.1-13]."""
    t = uniq()
    with clients(broker.port) as mk:
        s = mk(client_id=uniq(), version=version)
        s.connect()
        s.subscribe(t, 1, rap=rap) if version == 5 else s.subscribe(t, 1)
        p = mk(client_id=uniq(), version=4)
        p.connect()
        p.publish(t, b"live", 1, retain=True)
        m = s.get()
        assert m.payload == b"live" and bool(m.retain) == flag
        p.publish(t, b"notretained", 1)
        assert not s.get().retain
        p.publish(t, b"", 1, retain=True)


def test_retained_wildcard_and_qos(broker):
    """A wildcard subscription gets every matching retained message, each at
    min(message QoS, subscription QoS), with RETAIN set."""
    t = uniq()
    with clients(broker.port) as mk:
        p = mk(client_id=uniq(), version=5)
        p.connect()
        for i, q in enumerate((0, 1, 2)):
            p.publish("%s/a/%d" % (t, i), b"r%d" % i, q, retain=True)
        p.publish(t + "/other", b"x", 2, retain=True)
        s = mk(client_id=uniq(), version=5)
        s.connect()
        s.subscribe(t + "/a/+", 1)
        msgs = s.wait_messages(3)
        assert sorted((m.topic, m.payload, m.qos, m.retain) for m in msgs) == [
            ("%s/a/%d" % (t, i), b"r%d" % i, min(i, 1), True) for i in range(3)]
        time.sleep(0.3)
        assert len(s.messages) == 3


def test_retain_handling(broker):
    """5.0 Retain Handling: 0 sends retained on every SUBSCRIBE, 1 only if the subscription
    did not exist [MQTT-3.3.1-10], 2 never [MQTT-3.3.1-11]."""
    t = uniq()
    with clients(broker.port) as mk:
        p = mk(client_id=uniq(), version=5)
        p.connect()
        p.publish(t, b"kept", 1, retain=True)
        s = mk(client_id=uniq(), version=5)
        s.connect()
        s.subscribe(t, 1, rh=2)
        assert s.get(0.5) is None
        # the subscription exists now: rh=1 sends nothing
        s.subscribe(t, 1, rh=1)
        assert s.get(0.5) is None
        s.subscribe(t, 1, rh=0)
        m = s.get()
        assert m.payload == b"kept" and m.retain
        s.unsubscribe(t)
        s.subscribe(t, 1, rh=1)
        m = s.get()
        assert m.payload == b"kept" and m.retain
        s.subscribe(t, 1, rh=0)
        assert s.get().payload == b"kept"


def test_mosquitto_retained(broker):
    t = uniq()
    mosq_pub(broker.port, t, "kept", "311", 1, ["-r"])
    s = MosqSub(broker.port, t, "5", qos=1)
    try:
        assert s.messages(1) == [[t, "1", "1", "kept"]]
    finally:
        s.stop()
    mosq_pub(broker.port, t, "", "5", 1, ["-r"])
    s = MosqSub(broker.port, t, "31", qos=1)
    try:
        time.sleep(0.3)
        assert s.messages(1, timeout=0.3) == []
    finally:
        s.stop()


# ---- wills ----

@pytest.mark.parametrize("version", [3, 4, 5])
def test_will_on_abnormal_close(broker, version):
    """The will is published when the connection closes without DISCONNECT [MQTT-3.1.2-8]."""
    t = uniq()
    with clients(broker.port) as mk:
        s = mk(client_id=uniq(), version=5)
        s.connect()
        s.subscribe(t, 2)
        w = mk(client_id=uniq(), version=version, will=(t, b"gone", 1, False))
        w.connect()
        w.kill()
        m = s.get()
        assert m is not None, "no will"
        assert (m.topic, m.payload, m.qos, m.retain) == (t, b"gone", 1, False)


@pytest.mark.parametrize("version", [4, 5])
def test_no_will_after_disconnect(broker, version):
    """DISCONNECT (5.0: reason 0) deletes the will [MQTT-3.1.2-10], [MQTT-3.14.4-3]."""
    t = uniq()
    with clients(broker.port) as mk:
        s = mk(client_id=uniq(), version=5)
        s.connect()
        s.subscribe(t, 2)
        w = mk(client_id=uniq(), version=version, will=(t, b"gone", 1, False))
        w.connect()
        w.disconnect()
        assert s.get(0.7) is None


def test_will_on_disconnect_with_will_message(broker):
    """5.0 DISCONNECT with reason 0x04 (Disconnect with Will Message) publishes the will."""
    t = uniq()
    with clients(broker.port) as mk:
        s = mk(client_id=uniq(), version=5)
        s.connect()
        s.subscribe(t, 2)
        w = mk(client_id=uniq(), version=5, will=(t, b"asked", 2, False))
        w.connect()
        w.disconnect(reason=4)
        m = s.get()
        assert m is not None and m.payload == b"asked" and m.qos == 2


def test_will_retained(broker):
    t = uniq()
    with clients(broker.port) as mk:
        w = mk(client_id=uniq(), version=4, will=(t, b"last", 1, True))
        w.connect()
        w.kill()
        s = mk(client_id=uniq(), version=5)
        s.connect()
        s.subscribe(t, 1)
        m = s.get()
        assert m is not None and (m.payload, m.retain, m.qos) == (b"last", True, 1)


def test_will_properties_passed_through(broker):
    """Will properties are sent with the will [MQTT-3.1.3-?]; the Will Delay Interval is not
    a PUBLISH property and is not forwarded."""
    t = uniq()
    sub = raw_session(broker.port, 5, uniq("sub"))
    sub.subscribe([(t, 1)])
    wp = props(will_delay=0, payload_format=1, message_expiry=100, content_type="text/plain",
               response_topic=t + "/reply", correlation_data=b"\x00\x01corr",
               user_property=[("k1", "v1"), ("k2", "v2"), ("k1", "again")])
    w = Raw(broker.port)
    from moatlib import connect5_packet
    w.send(connect5_packet(uniq("w"), will=(t, "bye", 1, False), will_props=wp))
    assert w.expect(2)[1][1] == 0
    w.close()
    m = sub.publishes(1)[0]
    assert m.topic == t and m.payload == b"bye"
    assert m.props["payload_format"] == 1
    assert 0 < m.props["message_expiry"] <= 100
    assert m.props["content_type"] == "text/plain"
    assert m.props["response_topic"] == t + "/reply"
    assert m.props["correlation_data"] == b"\x00\x01corr"
    assert m.props["user_property"] == [("k1", "v1"), ("k2", "v2"), ("k1", "again")]
    assert "will_delay" not in m.props


def _will_conn(port, cid, topic, will_delay, session_expiry, clean=True):
    from moatlib import connect5_packet
    r = Raw(port)
    r.version = 5
    r.send(connect5_packet(cid, clean=clean, props=props(session_expiry=session_expiry),
                           will=(topic, "delayed", 1, False), will_props=props(will_delay=will_delay)))
    first, body = r.expect(2)
    r.session_present, rc, _ = parse_connack(body, 5)
    assert rc == 0
    return r


def test_will_delay(broker):
    """The will waits for its Will Delay Interval [MQTT-3.1.3-9] before publication."""
    t = uniq()
    with clients(broker.port) as mk:
        s = mk(client_id=uniq(), version=5)
        s.connect()
        s.subscribe(t, 1)
        r = _will_conn(broker.port, uniq("w"), t, 2, 60)
        r.close()
        assert s.get(1.0) is None, "will sent before its delay"
        m = s.get(6)
        assert m is not None and m.payload == b"delayed", "no will after its delay"


def test_will_delay_cancelled_by_reconnect(broker):
    """A new connection to the session before the Will Delay Interval passes means no will
    [MQTT-3.1.3-9]."""
    t = uniq()
    cid = uniq("w")
    with clients(broker.port) as mk:
        s = mk(client_id=uniq(), version=5)
        s.connect()
        s.subscribe(t, 1)
        r = _will_conn(broker.port, cid, t, 2, 60)
        r.close()
        time.sleep(0.3)
        r = _will_conn(broker.port, cid, t, 2, 60, clean=False)
        assert r.session_present
        assert s.get(3.5) is None, "will sent although the client came back in time"
        r.send(disconnect_packet(0))
        assert r.wait_closed(5)[0]
        assert s.get(0.5) is None


def test_will_delay_ends_with_session(broker):
    """The will is published when the session ends, if that comes before the Will Delay
    Interval (section 3.1.3.2.2: whichever happens first)."""
    t = uniq()
    with clients(broker.port) as mk:
        s = mk(client_id=uniq(), version=5)
        s.connect()
        s.subscribe(t, 1)
        r = _will_conn(broker.port, uniq("w"), t, 3600, 1)
        r.close()
        m = s.get(6)
        assert m is not None and m.payload == b"delayed"


# ---- sessions ----

@pytest.mark.parametrize("version", [3, 4, 5])
def test_persistent_session_queues_qos1_qos2(broker, version):
    """A persistent session keeps its subscriptions and queues QoS 1 and 2 messages while the
    client is away [MQTT-3.1.2-5 (3.1.1 3.1.2-4)], delivered on reconnect with session present
    [MQTT-3.2.2-2]; QoS 0 messages are not queued by default."""
    t = uniq()
    cid = uniq("persist")
    with clients(broker.port) as mk:
        kw = {"session_expiry": 300} if version == 5 else {}
        s = mk(client_id=cid, version=version, clean=False, **kw)
        present, _, _ = s.connect()
        assert not present
        s.subscribe(t + "/#", 2)
        s.disconnect()
        p = mk(client_id=uniq(), version=5)
        p.connect()
        p.publish(t + "/0", b"zero", 0)
        p.publish(t + "/1", b"one", 1)
        p.publish(t + "/2", b"two", 2)
        for i in range(5):
            p.publish(t + "/n", b"n%d" % i, 1)
        s2 = mk(client_id=cid, version=version, clean=False, **kw)
        present, _, _ = s2.connect()
        assert present
        msgs = s2.wait_messages(7)
        # paho hands a QoS 2 message over at PUBREL: compare the QoS 1 order only
        assert sorted((m.payload, m.qos) for m in msgs) == sorted([(b"one", 1), (b"two", 2)] + [
            (b"n%d" % i, 1) for i in range(5)])
        assert [m.payload for m in msgs if m.qos == 1] == [b"one"] + [b"n%d" % i for i in range(5)]
        time.sleep(0.3)
        assert len(s2.messages) == 7
        # the subscription survived: live messages flow
        p.publish(t + "/live", b"live", 1)
        assert b"live" in payloads(s2.wait_messages(8))


def test_qos0_queued_when_configured(make_broker):
    b = make_broker(config="queue_qos0_messages true\n")
    t = uniq()
    cid = uniq()
    with clients(b.port) as mk:
        s = mk(client_id=cid, version=4, clean=False)
        s.connect()
        s.subscribe(t, 0)
        s.disconnect()
        p = mk(client_id=uniq(), version=4)
        p.connect()
        p.publish(t, b"q0", 0)
        p.publish(t, b"q0b", 1)
        s2 = mk(client_id=cid, version=4, clean=False)
        assert s2.connect()[0]
        msgs = s2.wait_messages(2)
        assert [(m.payload, m.qos) for m in msgs] == [(b"q0", 0), (b"q0b", 0)]


@pytest.mark.parametrize("version", [4, 5])
def test_clean_session_discards(broker, version):
    """Clean session / clean start discards the previous session [MQTT-3.1.2-4 (3.1.1
    3.1.2-6)]: no session present, no queued messages, no subscriptions."""
    t = uniq()
    cid = uniq()
    with clients(broker.port) as mk:
        kw = {"session_expiry": 300} if version == 5 else {}
        s = mk(client_id=cid, version=version, clean=False, **kw)
        s.connect()
        s.subscribe(t, 1)
        s.disconnect()
        p = mk(client_id=uniq(), version=4)
        p.connect()
        p.publish(t, b"queued", 1)
        s2 = mk(client_id=cid, version=version, clean=True, **kw)
        assert s2.connect()[0] is False
        p.publish(t, b"after", 1)
        assert s2.get(0.7) is None


def test_session_expiry_zero_ends_session(broker):
    """5.0 without Session Expiry Interval: the session ends when the connection closes
    [MQTT-3.1.2-?, section 3.1.2.11.2: absent means 0]."""
    cid = uniq()
    with clients(broker.port) as mk:
        s = mk(client_id=cid, version=5, clean=False)
        s.connect()
        s.subscribe(uniq(), 1)
        s.disconnect()
        s2 = mk(client_id=cid, version=5, clean=False)
        assert s2.connect()[0] is False


def test_session_expiry_elapses(broker):
    cid = uniq()
    with clients(broker.port) as mk:
        s = mk(client_id=cid, version=5, clean=False, session_expiry=1)
        s.connect()
        s.subscribe(uniq(), 1)
        s.disconnect()
        time.sleep(3.0)
        s2 = mk(client_id=cid, version=5, clean=False, session_expiry=1)
        assert s2.connect()[0] is False


def test_session_expiry_set_by_disconnect(broker):
    """The DISCONNECT's Session Expiry Interval replaces the CONNECT's (3.14.2.2.2)."""
    cid = uniq()
    with clients(broker.port) as mk:
        s = mk(client_id=cid, version=5, clean=False, session_expiry=300)
        s.connect()
        s.disconnect(reason=0, SessionExpiryInterval=0)
        s2 = mk(client_id=cid, version=5, clean=False, session_expiry=300)
        assert s2.connect()[0] is False
        s2.disconnect()
        s3 = mk(client_id=cid, version=5, clean=False, session_expiry=300)
        assert s3.connect()[0] is True


@pytest.mark.parametrize("version,qos", [(4, 1), (5, 1), (4, 2), (5, 2)])
def test_redelivery_with_dup(broker, version, qos):
    """An unacknowledged QoS 1/2 PUBLISH is resent with DUP and the same packet id when the
    session resumes [MQTT-4.4.0-1], [MQTT-3.3.1-1]."""
    t = uniq()
    cid = uniq("sub")
    kw = {"props": props(session_expiry=60)} if version == 5 else {}
    sub = raw_session(broker.port, version, cid, clean=False, **kw)
    sub.subscribe([(t, qos)])
    with clients(broker.port) as mk:
        p = mk(client_id=uniq(), version=5)
        p.connect()
        p.publish(t, b"m1", qos)
        p.publish(t, b"m2", qos)
    first = sub.publishes(2, ack=False)
    assert [(m.payload, m.dup) for m in first] == [(b"m1", False), (b"m2", False)]
    sub.close()
    sub = raw_session(broker.port, version, cid, clean=False, **kw)
    assert sub.session_present
    again = sub.publishes(2)
    assert [(m.payload, m.dup, m.pid, m.qos) for m in again] == [
        (m.payload, True, m.pid, qos) for m in first]
    assert sub.publishes(1, timeout=0.5) == []
    sub.close()


@pytest.mark.parametrize("version", [4, 5])
def test_session_takeover(broker, version):
    """A second connection with the same client id closes the first [MQTT-3.1.4-3]; a 5.0
    client is told with DISCONNECT 0x8E (Session taken over)."""
    cid = uniq("dup")
    t = uniq()
    kw = {"props": props(session_expiry=60)} if version == 5 else {}
    a = raw_session(broker.port, version, cid, clean=False, **kw)
    a.subscribe([(t, 1)])
    b = raw_session(broker.port, version, cid, clean=False, **kw)
    assert b.session_present
    closed, pkts = a.wait_closed(5)
    assert closed
    if version == 5:
        assert len(pkts) == 1 and pkts[0][0] == 0xE0
        assert parse_reason(*pkts[0], 5)[1] == 0x8E
    else:
        assert pkts == []
    # the subscription went with the session
    with clients(broker.port) as mk:
        p = mk(client_id=uniq(), version=4)
        p.connect()
        p.publish(t, b"to-b", 1)
    assert [m.payload for m in b.publishes(1)] == [b"to-b"]
    assert b.ping()


# ---- keepalive ----

def test_keepalive_timeout(broker):
    """A client silent for 1.5x its keepalive is disconnected [MQTT-3.1.2-22] (3.1.1
    [MQTT-3.1.2-24]); 5.0 clients get DISCONNECT 0x8D (Keep Alive timeout). A client that
    pings stays."""
    idle = {v: raw_session(broker.port, v, uniq("idle%d" % v), keepalive=2) for v in (4, 5)}
    busy = raw_session(broker.port, 5, uniq("busy"), keepalive=2)
    result = {}
    deadline = time.time() + 7
    while time.time() < deadline and len(result) < 2:
        assert busy.ping(), "a client sending PINGREQ was disconnected"
        for v, r in idle.items():
            if v not in result:
                closed, pkts = r.wait_closed(0.3)
                if closed:
                    result[v] = pkts
    assert sorted(result) == [4, 5], "an idle client with keepalive 2 was not closed in 7 s"
    assert [(p[0], parse_reason(*p, 5)[1]) for p in result[5]] == [(0xE0, 0x8D)]
    assert result[4] == []
    assert busy.ping()


def test_server_keep_alive(make_broker):
    """max_keepalive: a 5.0 client asking for more gets Server Keep Alive in CONNACK
    [MQTT-3.2.2-21]; a 3.1.1 client asking for more is refused with rc 2 (moat's choice,
    as Mosquitto)."""
    b = make_broker(config="max_keepalive 30\n")
    r = raw_session(b.port, 5, uniq(), keepalive=120)
    assert r.connack_props.get("server_keep_alive") == 30
    r = raw_session(b.port, 5, uniq(), keepalive=20)
    assert "server_keep_alive" not in r.connack_props
    r3 = Raw(b.port)
    r3.send(connect_packet(uniq(), 4, keepalive=120))
    first, body = r3.expect(2)
    assert body == b"\x00\x02"
    assert r3.wait_closed(5)[0]
    raw_session(b.port, 4, uniq(), keepalive=30).close()


# ---- client identifiers ----

def test_assigned_client_identifier(broker):
    """An empty 5.0 client id gets an Assigned Client Identifier [MQTT-3.2.2-16]."""
    r = raw_session(broker.port, 5, "")
    cid = r.connack_props.get("assigned_client_id")
    assert cid and cid.startswith("auto-")
    t = uniq()
    r.subscribe([(t, 1)])
    r.publish(t, b"self", 0)
    assert [m.payload for m in r.publishes(1)] == [b"self"]
    r2 = raw_session(broker.port, 5, "")
    assert r2.connack_props["assigned_client_id"] != cid
    # the assigned id is a real client id: reconnecting with it takes the session over
    r3 = raw_session(broker.port, 5, cid)
    assert r.wait_closed(5)[0]
    r3.close()


def test_empty_client_id_3(broker):
    """3.1.1: empty id with clean session 1 is accepted [MQTT-3.1.3-6]; with clean session 0
    it gets CONNACK 0x02 and is closed [MQTT-3.1.3-8]. 3.1 needs an id."""
    r = raw_session(broker.port, 4, "", clean=True)
    assert r.ping()
    for version in (4, 3):
        r = Raw(broker.port)
        r.send(connect_packet("", version, clean=version == 3 or False))
        first, body = r.expect(2)
        assert body == b"\x00\x02", version
        assert r.wait_closed(5)[0]


def test_zero_length_clientid_refused_when_configured(make_broker):
    b = make_broker(config="allow_zero_length_clientid false\n")
    r = Raw(b.port)
    r.send(connect_packet("", 5))
    assert parse_connack(r.expect(2)[1], 5)[1] == 0x85
    assert r.wait_closed(5)[0]
    r = Raw(b.port)
    r.send(connect_packet("", 4))
    assert r.expect(2)[1] == b"\x00\x02"


def test_auto_id_prefix(make_broker):
    b = make_broker(config="auto_id_prefix moat-test-\n")
    r = raw_session(b.port, 5, "")
    assert r.connack_props["assigned_client_id"].startswith("moat-test-")


# ---- topics ----

def test_wildcards(broker):
    """+ matches one level (possibly empty), # the rest including the parent (4.7.1)."""
    t = uniq()
    filters = ["+", t + "/+", t + "/#", t + "/+/c", t + "/a/+", "+/a/#", t + "/a/b/c"]
    topics = [t, t + "/", t + "/a", t + "/a/b", t + "/a/b/c", t + "/x/c", t + "//c"]
    want = {
        "+": [t],
        t + "/+": [t + "/", t + "/a"],
        t + "/#": topics,
        t + "/+/c": [t + "/x/c", t + "//c"],
        t + "/a/+": [t + "/a/b"],
        "+/a/#": [t + "/a", t + "/a/b", t + "/a/b/c"],
        t + "/a/b/c": [t + "/a/b/c"],
    }
    with clients(broker.port) as mk:
        subs = {}
        for f in filters:
            s = mk(client_id=uniq(), version=5)
            s.connect()
            s.subscribe(f, 1)
            subs[f] = s
        p = mk(client_id=uniq(), version=4)
        p.connect()
        for tp in topics:
            p.publish(tp, tp.encode(), 1)
        for f, s in subs.items():
            s.wait_messages(len(want[f]))
        time.sleep(0.3)
        for f, s in subs.items():
            got = sorted(m.topic for m in s.messages if m.topic.startswith(t))
            assert got == sorted(want[f]), f


def test_dollar_topics_not_matched_by_leading_wildcards(make_broker):
    """A filter starting with a wildcard does not match a topic starting with $
    [MQTT-4.7.2-1]: '#' gets no $SYS and no $app message, '$SYS/#' does."""
    b = make_broker(config="sys_interval 1\n")
    t = uniq()
    with clients(b.port) as mk:
        hash_ = mk(client_id=uniq(), version=5)
        hash_.connect()
        hash_.subscribe("#", 0)
        plus = mk(client_id=uniq(), version=4)
        plus.connect()
        plus.subscribe("+/" + t, 0)
        plus.subscribe("+/broker/#", 0)
        sys_ = mk(client_id=uniq(), version=4)
        sys_.connect()
        sys_.subscribe("$SYS/#", 0)
        app = mk(client_id=uniq(), version=4)
        app.connect()
        app.subscribe("$app/#", 0)
        p = mk(client_id=uniq(), version=4)
        p.connect()
        p.publish("$app/" + t, b"dollar", 1)
        p.publish("app/" + t, b"plain", 1)
        assert sys_.wait_messages(5, 5), "no $SYS messages"
        assert [m.topic for m in app.wait_messages(1)] == ["$app/" + t]
        time.sleep(1.5)
        assert not [m.topic for m in hash_.messages if m.topic.startswith("$")]
        assert [m.payload for m in hash_.messages if m.topic.endswith(t)] == [b"plain"]
        assert [m.topic for m in plus.messages] == ["app/" + t]


def test_overlapping_subscriptions_one_copy(broker):
    """5.0: overlapping subscriptions of one session give ONE copy at the highest QoS
    [MQTT-3.3.4-2] with every Subscription Identifier [MQTT-3.3.4-3]."""
    t = uniq()
    s = raw_session(broker.port, 5, uniq("sub"))
    s.subscribe([(t + "/+", 0)], pid=1, props=props(subscription_id=1))
    s.subscribe([(t + "/#", 2)], pid=2, props=props(subscription_id=2))
    s.subscribe([(t + "/a", 1)], pid=3, props=props(subscription_id=3))
    s.subscribe([("+/a", 1)], pid=4)
    with clients(broker.port) as mk:
        p = mk(client_id=uniq(), version=5)
        p.connect()
        p.publish(t + "/a", b"A", 2)
        p.publish(t + "/b", b"B", 2)
        p.publish(t + "/a", b"A1", 1)
    got = s.publishes(3)
    assert [(m.payload, m.qos) for m in got] == [(b"A", 2), (b"B", 2), (b"A1", 1)]
    assert sorted(got[0].props["subscription_id"]) == [1, 2, 3]
    assert sorted(got[1].props["subscription_id"]) == [1, 2]
    assert sorted(got[2].props["subscription_id"]) == [1, 2, 3]
    assert s.publishes(1, timeout=0.5) == []


def test_shared_subscriptions(broker):
    """$share/{group}/{filter}: each message goes to one member of each group (4.8.2); two
    groups each get every message; plain subscribers get every message too."""
    t = uniq()
    n = 60
    with clients(broker.port) as mk:
        g = [mk(client_id=uniq("g"), version=v) for v in (5, 5, 4)]
        h = [mk(client_id=uniq("h"), version=5) for _ in range(2)]
        plain = mk(client_id=uniq("plain"), version=5)
        for c in g:
            c.connect()
            c.subscribe("$share/g/%s/#" % t, 1)
        for c in h:
            c.connect()
            c.subscribe("$share/h/%s/+" % t, 2)
        plain.connect()
        plain.subscribe(t + "/#", 1)
        p = mk(client_id=uniq(), version=5)
        p.connect()
        for i in range(n):
            p.publish("%s/%d" % (t, i % 7), b"%d" % i, 1)

        def total(cs):
            return sum(len(c.messages) for c in cs)
        wait_for(lambda: total(g) >= n and total(h) >= n and len(plain.messages) >= n, 10)
        time.sleep(0.3)
        for group in (g, h):
            got = sorted(int(m.payload) for c in group for m in c.messages)
            assert got == list(range(n)), "each message once per group"
        assert all(c.messages for c in g), "messages spread across the group: %r" % [
            len(c.messages) for c in g]
        assert all(c.messages for c in h)
        assert sorted(int(m.payload) for m in plain.messages) == list(range(n))
        # a member leaves: the others get everything
        g[0].unsubscribe("$share/g/%s/#" % t)
        before = [len(c.messages) for c in g]
        for i in range(n, n + 10):
            p.publish("%s/x" % t, b"%d" % i, 1)
        wait_for(lambda: total(g) >= n + 10, 5)
        time.sleep(0.2)
        assert len(g[0].messages) == before[0]
        assert total(g) == n + 10


def test_shared_subscription_no_retained(broker):
    """Retained messages are not sent for a shared subscription (5.0 section 4.8.2)."""
    t = uniq()
    with clients(broker.port) as mk:
        p = mk(client_id=uniq(), version=5)
        p.connect()
        p.publish(t, b"kept", 1, retain=True)
        s = mk(client_id=uniq(), version=5)
        s.connect()
        s.subscribe("$share/g/" + t, 1)
        assert s.get(0.5) is None
        p.publish(t, b"", 1, retain=True)


@pytest.mark.parametrize("version", [4, 5])
def test_unsubscribe(broker, version):
    """UNSUBSCRIBE removes the subscription: the Server MUST stop adding new messages for
    delivery to the Client [MQTT-3.10.4-2]; 5.0 UNSUBACK says Success (0x00) for a filter the
    session held and 0x11 (No subscription existed) otherwise (3.11.3)."""
    from moatlib import unsubscribe_packet
    t = uniq()
    s = raw_session(broker.port, version, uniq("sub"))
    s.subscribe([(t + "/a", 1), (t + "/+", 1)])
    s.send(unsubscribe_packet(2, [t + "/a", t + "/nothing"], version))
    first, body = s.expect(11)
    if version == 5:
        assert list(body[3:]) == [0x00, 0x11]
    s.send(unsubscribe_packet(3, [t + "/+"], version))
    first, body = s.expect(11)
    if version == 5:
        assert list(body[3:]) == [0x00]
    with clients(broker.port) as mk:
        p = mk(client_id=uniq(), version=4)
        p.connect()
        p.publish(t + "/a", b"none", 1)
        p.publish(t + "/b", b"none", 1)
    assert s.publishes(1, timeout=0.7) == [], "delivered after every subscription was removed"


def test_no_local(broker):
    """No Local: the Server MUST NOT forward to the connection that published [MQTT-3.8.3-3]."""
    t = uniq()
    with clients(broker.port) as mk:
        a = mk(client_id=uniq(), version=5)
        a.connect()
        a.subscribe(t, 1, no_local=True)
        a.subscribe(t + "/+", 1)
        b_ = mk(client_id=uniq(), version=5)
        b_.connect()
        a.publish(t, b"own", 1)
        a.publish(t + "/x", b"own-other-sub", 1)
        b_.publish(t, b"theirs", 1)
        a.wait_messages(2)
        time.sleep(0.3)
        assert sorted(m.payload for m in a.messages) == [b"own-other-sub", b"theirs"]


def test_subscription_identifiers(broker):
    """The Subscription Identifier is sent with each matching message [MQTT-3.3.4-3],
    replaced when the subscription is replaced, and also comes with retained messages."""
    t = uniq()
    with clients(broker.port) as mk:
        p = mk(client_id=uniq(), version=5)
        p.connect()
        p.publish(t + "/r", b"retained", 1, retain=True)
        s = mk(client_id=uniq(), version=5)
        s.connect()
        s.subscribe(t + "/#", 1, subid=268435455)
        m = s.get()
        assert m.payload == b"retained" and m.properties.SubscriptionIdentifier == [268435455]
        p.publish(t + "/x", b"live", 1)
        m = s.get()
        assert m.payload == b"live" and m.properties.SubscriptionIdentifier == [268435455]
        s.subscribe(t + "/#", 1, rh=2)
        p.publish(t + "/x", b"nosubid", 1)
        m = s.get()
        assert m.payload == b"nosubid"
        assert not hasattr(m.properties, "SubscriptionIdentifier")
        p.publish(t + "/r", b"", 1, retain=True)


# ---- topic aliases ----

def test_topic_alias_client_to_server(broker):
    """A Topic Alias set by the client maps later empty-topic PUBLISHes (3.3.2.3.4), and can
    be remapped."""
    t = uniq()
    sub = raw_session(broker.port, 5, uniq("sub"))
    sub.subscribe([(t + "/#", 1)])
    pub = raw_session(broker.port, 5, uniq("pub"))
    assert pub.connack_props.get("topic_alias_maximum") == 10
    pub.publish(t + "/x", b"a", 1, pid=1, props=props(topic_alias=1))
    pub.publish("", b"b", 1, pid=2, props=props(topic_alias=1))
    pub.publish(t + "/y", b"c", 0, props=props(topic_alias=10))
    pub.publish("", b"d", 1, pid=3, props=props(topic_alias=10))
    pub.publish(t + "/z", b"e", 1, pid=4, props=props(topic_alias=1))
    pub.publish("", b"f", 2, pid=5, props=props(topic_alias=1))
    got = sub.publishes(6)
    assert [(m.topic, m.payload) for m in got] == [
        (t + "/x", b"a"), (t + "/x", b"b"), (t + "/y", b"c"), (t + "/y", b"d"),
        (t + "/z", b"e"), (t + "/z", b"f")]
    assert all("topic_alias" not in m.props for m in got)


def test_topic_alias_paho(broker):
    t = uniq()
    with clients(broker.port) as mk:
        s = mk(client_id=uniq(), version=4)
        s.connect()
        s.subscribe(t, 1)
        p = mk(client_id=uniq(), version=5)
        p.connect()
        p.publish(t, b"first", 1, TopicAlias=3)
        p.publish("", b"second", 1, TopicAlias=3)
        assert [(m.topic, m.payload) for m in s.wait_messages(2)] == [
            (t, b"first"), (t, b"second")]


def test_topic_alias_server_to_client(broker):
    """With a Topic Alias Maximum in CONNECT the broker may use aliases: the second message on
    a topic comes with an empty topic and the alias; never alias 0 or above the maximum
    [MQTT-3.3.2-11]."""
    t = uniq()
    sub = raw_session(broker.port, 5, uniq("sub"), props=props(topic_alias_maximum=2))
    sub.subscribe([(t + "/#", 1)])
    plain = raw_session(broker.port, 5, uniq("plain"))
    plain.subscribe([(t + "/#", 1)])
    seq = ["x", "x", "y", "x", "y", "z", "z", "x"]
    with clients(broker.port) as mk:
        p = mk(client_id=uniq(), version=4)
        p.connect()
        for i, s in enumerate(seq):
            p.publish("%s/%s" % (t, s), b"%d" % i, i % 2)
    got = sub.publishes(len(seq))
    aliases = {}
    resolved = []
    for m in got:
        a = m.props.get("topic_alias")
        if a is not None:
            assert 1 <= a <= 2
            if m.topic:
                aliases[a] = m.topic
            else:
                assert a in aliases, "empty topic with an unknown alias"
        else:
            assert m.topic
        resolved.append(m.topic or aliases[a])
    assert resolved == ["%s/%s" % (t, s) for s in seq]
    assert got[1].topic == "" and got[1].props.get("topic_alias") == got[0].props["topic_alias"]
    for m in plain.publishes(len(seq)):
        assert m.topic and "topic_alias" not in m.props


def test_topic_alias_not_spent_on_discarded_message(broker):
    """A message too large for the client is discarded [MQTT-3.1.2-25]; the alias mapping it
    would have carried never reached the client, so the next message on that topic must
    carry the topic name again: a receiver gets an empty topic only with an alias it was
    told (3.3.2.3.4; an unknown alias is a Protocol Error for the client)."""
    t = uniq()
    sub = raw_session(broker.port, 5, uniq("sub"),
                      props=props(topic_alias_maximum=5, maximum_packet_size=300))
    sub.subscribe([(t, 0)])
    with clients(broker.port) as mk:
        p = mk(client_id=uniq(), version=5)
        p.connect()
        p.publish(t, b"B" * 1000, 0)
        p.publish(t, b"small", 0)
        p.publish(t, b"again", 0)
    got = sub.publishes(2)
    assert [m.payload for m in got] == [b"small", b"again"]
    assert got[0].topic == t, "first message the client sees on %s: topic %r, alias %r" % (
        t, got[0].topic, got[0].props.get("topic_alias"))


@pytest.mark.parametrize("alias", [0, 11])
def test_topic_alias_invalid(broker, alias):
    """Topic Alias 0 or above the broker's Topic Alias Maximum: DISCONNECT 0x94
    [MQTT-3.3.2-8], [MQTT-3.3.2-9] (reason 0x94 Topic Alias invalid)."""
    r = raw_session(broker.port, 5, uniq())
    r.send(publish_packet("a/b", b"x", 0, version=5, props=props(topic_alias=alias)))
    closed, pkts = r.wait_closed(5)
    assert closed
    assert [(p[0], parse_reason(*p, 5)[1]) for p in pkts] == [(0xE0, 0x94)]


def test_topic_alias_when_disabled(make_broker):
    b = make_broker(config="max_topic_alias 0\n")
    r = raw_session(b.port, 5, uniq())
    assert "topic_alias_maximum" not in r.connack_props
    r.send(publish_packet("a/b", b"x", 0, version=5, props=props(topic_alias=1)))
    closed, pkts = r.wait_closed(5)
    assert closed and [(p[0], parse_reason(*p, 5)[1]) for p in pkts] == [(0xE0, 0x94)]


def test_topic_alias_unmapped(broker):
    """An empty topic with an alias that has no mapping is a Protocol Error (3.3.2.3.4)."""
    r = raw_session(broker.port, 5, uniq())
    r.send(publish_packet("", b"x", 0, version=5, props=props(topic_alias=4)))
    closed, pkts = r.wait_closed(5)
    assert closed and [(p[0], parse_reason(*p, 5)[1]) for p in pkts] == [(0xE0, 0x82)]


# ---- message expiry ----

def test_message_expiry(broker):
    """A queued message whose Message Expiry Interval passed is not delivered
    [MQTT-3.3.2-5]; the others carry the interval minus the time they waited
    [MQTT-3.3.2-6]. An expired retained message is not sent either."""
    t = uniq()
    cid = uniq()
    kw = {"props": props(session_expiry=300)}
    s = raw_session(broker.port, 5, cid, clean=False, **kw)
    s.subscribe([(t + "/#", 1)])
    s.close()
    p = raw_session(broker.port, 5, uniq())
    p.publish(t + "/short", b"short", 1, props=props(message_expiry=1))
    p.publish(t + "/long", b"long", 1, props=props(message_expiry=60))
    p.publish(t + "/none", b"none", 1)
    p.publish(t + "/rshort", b"rshort", 0, retain=True, props=props(message_expiry=1))
    p.publish(t + "/rlong", b"rlong", 0, retain=True, props=props(message_expiry=60))
    time.sleep(2.3)
    s = raw_session(broker.port, 5, cid, clean=False, **kw)
    assert s.session_present
    got = s.publishes(2)
    got += s.publishes(1, timeout=0.5)
    assert sorted(m.payload for m in got) == [b"long", b"none"], got
    byp = {m.payload: m for m in got}
    assert 1 <= byp[b"long"].props["message_expiry"] <= 58
    assert "message_expiry" not in byp[b"none"].props
    n = raw_session(broker.port, 5, uniq())
    n.subscribe([(t + "/+", 1)])
    got = n.publishes(1)
    got += n.publishes(1, timeout=0.5)
    assert [m.payload for m in got] == [b"rlong"]
    assert 1 <= got[0].props["message_expiry"] <= 58 and got[0].retain


# ---- maximum packet size ----

def test_client_maximum_packet_size(broker):
    """A message larger than the client's Maximum Packet Size is not sent to it
    [MQTT-3.1.2-24]; the Server discards it and behaves as if it had been sent
    [MQTT-3.1.2-25], so smaller messages keep flowing, QoS 1 included (Receive Maximum 1
    here, so a discarded message that held the window would block everything after it)."""
    t = uniq()
    s = raw_session(broker.port, 5, uniq("small"),
                    props=props(maximum_packet_size=200, receive_maximum=1))
    s.subscribe([(t, 1)])
    with clients(broker.port) as mk:
        p = mk(client_id=uniq(), version=5)
        p.connect()
        p.publish(t, b"s" * 50, 0)
        p.publish(t, b"B" * 500, 0)
        p.publish(t, b"B" * 500, 1)
        p.publish(t, b"s" * 60, 1)
        p.publish(t, b"B" * 300, 1)
        p.publish(t, b"s" * 70, 1)
    got = s.publishes(3, timeout=3)
    assert [len(m.payload) for m in got] == [50, 60, 70]
    assert s.publishes(1, timeout=0.3) == []


def test_broker_maximum_packet_size(make_broker):
    """max_packet_size is announced in CONNACK; a larger packet gets DISCONNECT 0x95
    [MQTT-3.2.2-?: section 3.2.2.3.6] and only that client goes."""
    b = make_broker(config="max_packet_size 1000\n")
    t = uniq()
    other = raw_session(b.port, 4, uniq())
    other.subscribe([(t, 0)])
    r = raw_session(b.port, 5, uniq())
    assert r.connack_props["maximum_packet_size"] == 1000
    r.publish(t, b"x" * 900, 0)
    r.send(publish_packet(t, b"x" * 2000, 0, version=5))
    closed, pkts = r.wait_closed(5)
    assert closed and [(p[0], parse_reason(*p, 5)[1]) for p in pkts] == [(0xE0, 0x95)]
    r4 = raw_session(b.port, 4, uniq())
    r4.send(publish_packet(t, b"x" * 2000, 0))
    assert r4.wait_closed(5) == (True, [])
    got = other.publishes(1)
    assert [len(m.payload) for m in got] == [900]
    assert other.ping() and other.skipped == []


# ---- properties passed through ----

def test_publish_properties_passed_through(broker):
    """User Properties (order kept [MQTT-3.3.2-18]), Response Topic, Correlation Data,
    Content Type and Payload Format Indicator reach the subscriber unchanged
    [MQTT-3.3.2-4], [MQTT-3.3.2-15], [MQTT-3.3.2-16], [MQTT-3.3.2-20]."""
    t = uniq()
    s = raw_session(broker.port, 5, uniq("sub"))
    s.subscribe([(t, 2)])
    with clients(broker.port) as mk:
        ps = mk(client_id=uniq(), version=5)
        ps.connect()
        ps.subscribe(t, 1)
        p = mk(client_id=uniq(), version=5)
        p.connect()
        ups = [("z", "1"), ("a", "2"), ("z", "3"), ("ключ", "значение")]
        p.publish(t, "héllo".encode(), 2, UserProperty=ups, ResponseTopic=t + "/resp",
                  CorrelationData=b"\xff\x00id", ContentType="application/x-test",
                  PayloadFormatIndicator=1)
        m = ps.get()
        assert m.properties.UserProperty == ups
        assert m.properties.ResponseTopic == t + "/resp"
        assert m.properties.CorrelationData == b"\xff\x00id"
        assert m.properties.ContentType == "application/x-test"
        assert m.properties.PayloadFormatIndicator == 1
    m = s.publishes(1)[0]
    assert m.payload == "héllo".encode()
    assert m.props == {"user_property": ups, "response_topic": t + "/resp",
                       "correlation_data": b"\xff\x00id", "content_type": "application/x-test",
                       "payload_format": 1}


def test_request_response(broker):
    """The response topic pattern end to end: a responder answers on the Response Topic with
    the Correlation Data."""
    t = uniq()
    with clients(broker.port) as mk:
        responder = mk(client_id=uniq(), version=5)
        responder.connect()
        responder.subscribe(t + "/req", 1)
        req = mk(client_id=uniq(), version=5)
        req.connect()
        req.subscribe(t + "/resp", 1)
        req.publish(t + "/req", b"ping", 1, ResponseTopic=t + "/resp", CorrelationData=b"c1")
        m = responder.get()
        responder.publish(m.properties.ResponseTopic, b"pong", 1,
                          CorrelationData=m.properties.CorrelationData)
        r = req.get()
        assert r.payload == b"pong" and r.properties.CorrelationData == b"c1"


# ---- flow control ----

def test_receive_maximum_exceeded(make_broker):
    """More unacknowledged QoS 2 PUBLISHes than the broker's Receive Maximum: DISCONNECT
    0x93 [MQTT-3.3.4-7], [MQTT-3.3.4-9]."""
    b = make_broker(config="max_inflight_messages 5\n")
    r = raw_session(b.port, 5, uniq())
    assert r.connack_props["receive_maximum"] == 5
    for pid in range(1, 6):
        r.send(publish_packet("a/b", b"x", 2, pid, version=5))
        assert parse_reason(*r.expect(5), 5)[0] == pid
    # completing one frees a slot
    r.send(ack_packet(PUBREL, 1, 5))
    r.expect(7)
    r.send(publish_packet("a/b", b"x", 2, 6, version=5))
    r.expect(5)
    r.send(publish_packet("a/b", b"x", 2, 7, version=5))
    closed, pkts = r.wait_closed(5)
    assert closed and [(p[0], parse_reason(*p, 5)[1]) for p in pkts] == [(0xE0, 0x93)]


@pytest.mark.parametrize("version", [4, 5])
def test_client_receive_maximum_respected(make_broker, version):
    """Never more unacknowledged QoS 1 PUBLISHes to a client than its Receive Maximum
    [MQTT-3.3.4-8] (5.0), or than max_inflight_messages (3.1.1); the rest follow in order as
    acknowledgements come."""
    b = make_broker(config="max_inflight_messages %d\n" % (20 if version == 5 else 3))
    window = 2 if version == 5 else 3
    t = uniq()
    kw = {"props": props(receive_maximum=2)} if version == 5 else {}
    s = raw_session(b.port, version, uniq("sub"), **kw)
    s.subscribe([(t, 1)])
    with clients(b.port) as mk:
        p = mk(client_id=uniq(), version=5)
        p.connect()
        for i in range(10):
            p.publish(t, b"%d" % i, 1)
    got = s.publishes(window, ack=False)
    got += s.publishes(1, timeout=0.5, ack=False)
    assert len(got) == window
    seen = list(got)
    while len(seen) < 10:
        s.send(ack_packet(PUBACK, seen[len(seen) - window].pid, version))
        more = s.publishes(1, ack=False)
        more += s.publishes(1, timeout=0.2, ack=False)
        assert len(more) == 1, "one acknowledgement must free exactly one slot"
        seen += more
    assert [m.payload for m in seen] == [b"%d" % i for i in range(10)]


def test_client_receive_maximum_qos2(broker):
    """A QoS 2 delivery counts against the client's Receive Maximum until its PUBCOMP
    (section 4.9: the quota comes back on PUBCOMP), not at PUBREC."""
    t = uniq()
    s = raw_session(broker.port, 5, uniq(), props=props(receive_maximum=1))
    s.subscribe([(t, 2)])
    with clients(broker.port) as mk:
        p = mk(client_id=uniq(), version=5)
        p.connect()
        p.publish(t, b"1", 2)
        p.publish(t, b"2", 2)
    m1 = Publish(*s.expect(3), 5)
    s.send(ack_packet(PUBREC, m1.pid, 5))
    assert s.expect(6)[0] == 0x62
    assert s.quiet(0.5) == [], "a second QoS 2 message before PUBCOMP"
    s.send(ack_packet(PUBCOMP, m1.pid, 5))
    m2 = Publish(*s.expect(3), 5)
    assert m2.payload == b"2"


# ---- $SYS ----

def test_sys_topics(make_broker):
    b = make_broker(config="sys_interval 1\n")
    t = uniq()
    with clients(b.port) as mk:
        p = mk(client_id=uniq(), version=4)
        p.connect()
        p.publish(t + "/r1", b"1", 0, retain=True)
        p.publish(t + "/r2", b"2", 0, retain=True)
        p.subscribe(t + "/#", 0)
        s = mk(client_id=uniq(), version=5)
        s.connect()
        s.subscribe("$SYS/#", 0)
        want = ["$SYS/broker/version", "$SYS/broker/uptime", "$SYS/broker/clients/connected",
                "$SYS/broker/messages/received", "$SYS/broker/subscriptions/count",
                "$SYS/broker/retained messages/count",
                # the rest of issue 3's list
                "$SYS/broker/clients/disconnected", "$SYS/broker/clients/total",
                "$SYS/broker/clients/maximum", "$SYS/broker/messages/sent",
                "$SYS/broker/bytes/received", "$SYS/broker/bytes/sent",
                "$SYS/broker/load/messages/received/1min",
                "$SYS/broker/load/messages/received/5min",
                "$SYS/broker/load/messages/received/15min"]

        def latest():
            d = {}
            for m in list(s.messages):
                d[m.topic] = m.payload.decode()
            return d
        # retained copies come at once; wait for a fresh round after our own activity
        n0 = len(s.messages)
        assert wait_for(lambda: all(w in latest() for w in want) and
                        sum(1 for m in list(s.messages)[n0:] if not m.retain and
                            m.topic == "$SYS/broker/uptime") >= 1, 5), sorted(latest())
        time.sleep(1.2)
        d = latest()
        assert "moat" in d["$SYS/broker/version"]
        assert re.fullmatch(r"\d+ seconds", d["$SYS/broker/uptime"])
        assert int(d["$SYS/broker/clients/connected"]) == 2
        assert int(d["$SYS/broker/clients/maximum"]) >= 2
        assert int(d["$SYS/broker/messages/received"]) >= 6
        assert int(d["$SYS/broker/bytes/received"]) > 0
        assert int(d["$SYS/broker/subscriptions/count"]) == 2
        float(d["$SYS/broker/load/messages/received/1min"])
        assert int(d["$SYS/broker/retained messages/count"]) >= 2
        # $SYS topics are retained: a new subscriber gets them at once
        s2 = mk(client_id=uniq(), version=4)
        s2.connect()
        s2.subscribe("$SYS/broker/version", 0)
        m = s2.get()
        assert m.retain and b"moat" in m.payload


def test_mount_point(make_broker):
    """mount_point (docs/configuration.md, Mosquitto's meaning): the listener's clients live
    under the prefix; what they publish is seen under it elsewhere, and they receive topics
    with the prefix stripped."""
    from moatlib import free_port
    port2 = free_port()
    b = make_broker(config="mount_point mp/\nlistener %d 127.0.0.1\nallow_anonymous true\n"
                    % port2)
    t = uniq()
    inside = raw_session(b.port, 5, uniq("in"))
    inside.subscribe([(t + "/#", 1)])
    outside = raw_session(port2, 5, uniq("out"))
    outside.subscribe([("mp/%s/#" % t, 1)], pid=1)
    outside.subscribe([(t + "/#", 1)], pid=2)
    inside.publish(t + "/a", b"from-inside", 0)
    got = outside.publishes(1)
    assert [(m.topic, m.payload) for m in got] == [("mp/%s/a" % t, b"from-inside")]
    outside.publish("mp/%s/b" % t, b"from-outside", 0)
    got = [m for m in inside.publishes(2, timeout=2)]
    assert [(m.topic, m.payload) for m in got] == [(t + "/a", b"from-inside"),
                                                    (t + "/b", b"from-outside")]
