"""Authorization (issue 5): the ACL file, in Mosquitto's syntax plus moat's additions, against
raw MQTT 3.1.1 and 5.0 sessions (for the exact codes), paho-mqtt and the test PKI.

What is proved:
- every rule kind: general topics (clients without a user name), user blocks, patterns with
  %c and %u (a client id or user name holding '+', '#' or '/' cannot widen a pattern:
  CVE-2017-7650), read / write / readwrite / deny, deny winning over any allow, subscription
  coverage ("a/#" covers "a/+/b", "a/+" does not cover "a/#"), clientid and identity blocks;
- options no_wildcard_subscriptions (SUBACK 0xA2, CONNACK Wildcard Subscription Available
  0), max_qos (CONNACK Maximum QoS, granted QoS capped) and retain false (CONNACK Retain
  Available 0, DISCONNECT 0x9A);
- the codes: 5.0 PUBACK/PUBREC 0x87 and SUBACK 0x87; 3.1.1 acks the denied PUBLISH and
  drops it, SUBACK 0x80; a denied QoS 0 publish is dropped; the connection stays;
- deliveries are checked when sent: a right removed by a reload (SIGHUP) stops messages on a
  subscription made before; retained messages are filtered by read rights; the will topic
  is checked at CONNECT (0x87 / 5);
- an empty acl_file denies everything; a malformed one stops moatd at start with FILE:LINE,
  and on reload is refused (logged with FILE:LINE) while the old rules stay in force.

To show that something was NOT delivered without sleeping, a test publishes a "fence"
message the subscriber may receive after the denied one: the broker keeps the order of one
publisher's messages to one subscriber, so anything denied that leaked would arrive first.
"""
import shutil
import struct
import time

import pytest

from authlib import (MOSQUITTO_PUB, MOSQUITTO_SUB, client_ctx, connack,  # noqa: F401
                     events, login, mosq, paho_login, reload, start_fails, tls_listener, uniq,
                     wait_event, wait_log, write_file, write_passwd)
from moatlib import (PUBACK, PUBCOMP, PUBREC, PUBREL, Publish, ack_packet,  # noqa: F401
                     make_broker, parse_reason, props, publish_packet, watchdog)
from tls_pki import pki  # noqa: F401  (a fixture)

NA5, NA3 = 0x87, 0x80          # SUBACK "not authorized" (5.0) and "failure" (3.1.1)
DENIED = {5: NA5, 4: NA3}
USERS = {"alice": "alice pw", "bob": "bob pw", "admin": "admin pw", "bob/x": "bx pw",
         "+": "plus pw"}


def acl_broker(make_broker, tmp_path, acl, extra="", anonymous=True):
    """A broker with acl_file (text acl) and a password file of USERS."""
    path = write_file(tmp_path / "acl", acl)
    pw = write_passwd(tmp_path / "passwd", USERS)
    b = make_broker(config="acl_file %s\npassword_file %s\n%s" % (path, pw, extra),
                    anonymous=anonymous)
    b.acl_path = path
    return b


def user(b, name, version=5, client_id=None, **kw):
    """A raw session of user name (None: anonymous)."""
    if name is None:
        return login(b.port, version, client_id=client_id or uniq("anon"), **kw)
    return login(b.port, version, client_id=client_id or uniq(name.replace("/", "_")),
                 username=name, password=USERS[name], **kw)


def pub_code(r, topic, qos=1, retain=False, pid=41):
    """Publishes; returns the PUBACK/PUBREC reason (5.0) or 0 (3.1.1, or QoS 0). PUBLISH
    packets that arrive meanwhile (r may be subscribed to topic) are acknowledged and kept
    in r.skipped."""
    r.send(publish_packet(topic, b"x", qos=qos, pid=pid, retain=retain, version=r.version))
    if not qos:
        return 0
    want = 4 if qos == 1 else 5
    while True:
        p = r.recv_packet(5)
        assert p is not None, "no acknowledgement for %r" % topic
        if p[0] >> 4 == 3:
            m = Publish(p[0], p[1], r.version)
            if m.qos:
                r.send(ack_packet(PUBACK if m.qos == 1 else PUBREC, m.pid, r.version))
            r.skipped.append(p)
            continue
        if p[0] >> 4 == 7:  # PUBCOMP of a delivery acknowledged above
            continue
        if p[0] >> 4 == 6:
            r.send(ack_packet(PUBCOMP, struct.unpack("!H", p[1][:2])[0], r.version))
            continue
        assert p[0] >> 4 == want, p
        pid_got, rc, _ = parse_reason(p[0], p[1], r.version)
        assert pid_got == pid
        if want == 5 and rc < 0x80:
            r.send(ack_packet(PUBREL, pid, r.version))
            while r.recv_packet(5)[0] >> 4 != 7:
                pass
        return rc


def can_publish(r, topic):
    """True if the broker takes a QoS 1 publish (5.0 only: 3.1.1 cannot tell)."""
    rc = pub_code(r, topic)
    assert rc in (0, 0x10, 0x87), hex(rc)
    return rc != 0x87


def can_subscribe(r, f, qos=1):
    codes = r.subscribe([(f, qos)], pid=3)
    assert len(codes) == 1
    return codes[0] < 0x80


def received_until_fence(sub, fence_pub, fence_topic, timeout=5):
    """fence_pub publishes a fence (QoS 1) on fence_topic, which sub receives; returns the
    topics sub received before the fence. The fence's PUBACK is consumed."""
    fence = uniq("fence").encode()
    sub.skipped = []
    fence_pub.send(publish_packet(fence_topic, fence, qos=1, pid=4242,
                                  version=fence_pub.version))
    got = []
    deadline = time.time() + timeout
    while True:
        ms = sub.publishes(1, timeout=max(0.05, deadline - time.time()))
        assert ms, "fence not received (got %r)" % got
        if ms[0].payload == fence:
            break
        got.append(ms[0].topic)
    if fence_pub is not sub:
        fence_pub.expect(4)
    elif not any(p[0] >> 4 == 4 for p in sub.skipped):
        sub.expect(4)
    return got


# ======================================================================================
# rule kinds
# ======================================================================================

GENERAL = """\
# general rules: clients without a user name
topic read pub/#
topic write in/#
topic readwrite both/#

user alice
topic readwrite alice/#
"""


@pytest.mark.parametrize("version", [4, 5])
def test_general_rules_are_for_anonymous_clients(make_broker, tmp_path, version):
    """Topic lines before the first block apply to clients without a user name (Mosquitto's
    meaning); a client with a user name gets its own block's rules, not these."""
    b = acl_broker(make_broker, tmp_path, GENERAL)
    anon = user(b, None, version)
    assert can_subscribe(anon, "pub/#") and can_subscribe(anon, "both/x")
    assert not can_subscribe(anon, "in/#") and not can_subscribe(anon, "alice/#")
    assert anon.subscribe([("pub/+", 2), ("in/x", 0)]) == [2, DENIED[version]]
    alice = user(b, "alice", version)
    assert not can_subscribe(alice, "pub/#") and not can_subscribe(alice, "both/#")
    assert can_subscribe(alice, "alice/#")
    if version == 5:
        assert can_publish(anon, "in/x") and can_publish(anon, "both/x")
        assert not can_publish(anon, "pub/x") and not can_publish(anon, "alice/x")
        assert not can_publish(alice, "in/x") and can_publish(alice, "alice/x")
    # What reaches whom: anon (subscribed to pub/+ and both/x) gets what another anonymous
    # client writes to both/x, and nothing alice writes to alice/x.
    other = user(b, None, 5)
    alice.send(publish_packet("alice/x", b"a", qos=0, version=version))
    assert received_until_fence(anon, other, "both/x") == []
    for r in (anon, alice, other):
        r.close()


def test_user_blocks(make_broker, tmp_path):
    """`user NAME` blocks: alice writes alice/#, bob reads it; neither has the other's
    rights; a user without a block has none."""
    b = acl_broker(make_broker, tmp_path, "user alice\ntopic readwrite alice/#\n"
                   "user bob\ntopic read alice/#\ntopic readwrite bob/#\n")
    alice, bob, admin = user(b, "alice"), user(b, "bob"), user(b, "admin")
    assert can_subscribe(bob, "alice/#") and not can_publish(bob, "alice/x")
    assert can_publish(alice, "alice/x") and not can_subscribe(alice, "bob/#")
    assert not can_publish(alice, "bob/x")
    assert not can_subscribe(admin, "#") and not can_publish(admin, "alice/x")
    alice.publish("alice/news", b"hi", qos=1)
    assert received_until_fence(bob, alice, "alice/fence") == ["alice/x", "alice/news"]
    for r in (alice, bob, admin):
        r.close()


ACCESS = """\
user alice
topic read r/#
topic write w/#
topic readwrite rw/#
topic d/#
topic deny x/#
topic readwrite x/#
topic read
"""


@pytest.mark.parametrize("version", [4, 5])
def test_read_write_readwrite_deny(make_broker, tmp_path, version):
    """read lets subscribe (and receive), write lets publish, readwrite both, no access word
    means readwrite, deny neither (even with a readwrite line for the same topics);
    `topic read` alone is readwrite on the topic named "read" (Mosquitto's reading)."""
    b = acl_broker(make_broker, tmp_path, ACCESS)
    a = user(b, "alice", version)
    subs = a.subscribe([("r/#", 1), ("w/#", 1), ("rw/#", 1), ("d/x", 1), ("x/#", 1),
                        ("read", 1)], pid=5)
    assert subs == [1, DENIED[version], 1, 1, DENIED[version], 1]
    if version == 5:
        assert [can_publish(a, t) for t in ("r/1", "w/1", "rw/1", "d/1", "x/1", "read")] == \
            [False, True, True, True, False, True]
    else:
        # 3.1.1 cannot say no to a PUBLISH: what was delivered tells (a is subscribed to
        # rw/#, r/# and d/x; it publishes to each and only rw/ and d/x come back).
        for t in ("r/1", "rw/1", "d/x", "x/1"):
            a.send(publish_packet(t, b"v", qos=0, version=version))
        got = received_until_fence(a, a, "rw/fence")
        assert got == ["rw/1", "d/x"], got
    a.close()


@pytest.mark.parametrize("deny_first", [True, False])
def test_deny_wins(make_broker, tmp_path, deny_first):
    """A deny rule beats every allow wherever it stands in the file, for publish, subscribe
    and delivery: a/# may be subscribed, but a/secret/... is never delivered through it; a
    deny pattern beats a user's allow too."""
    rules = ["topic readwrite a/#", "topic deny a/secret/#"]
    if deny_first:
        rules.reverse()
    acl = "pattern deny a/%u/private\nuser alice\n" + "\n".join(rules) + "\n" + \
        "user bob\ntopic readwrite a/#\n"
    b = acl_broker(make_broker, tmp_path, acl)
    alice, bob = user(b, "alice"), user(b, "bob")
    assert not can_publish(alice, "a/secret/x") and not can_subscribe(alice, "a/secret/#")
    assert not can_subscribe(alice, "a/secret/+") and not can_subscribe(alice, "a/secret")
    assert not can_publish(alice, "a/alice/private") and can_publish(alice, "a/bob/private")
    assert can_subscribe(alice, "a/#")
    assert not can_publish(bob, "a/bob/private")
    for t in ("a/secret/x", "a/ok", "a/alice/private", "a/carol/private", "a/secret"):
        assert can_publish(bob, t)
    got = received_until_fence(alice, bob, "a/fence")
    assert got == ["a/ok", "a/carol/private"], got
    e = wait_event(b, "acl_denied", user="alice", access="publish", topic="a/secret/x")
    assert e["reason"] == "not allowed by the ACL"
    wait_event(b, "acl_denied", user="alice", access="subscribe", topic="a/secret/#")
    alice.close()
    bob.close()


def test_subscription_coverage(make_broker, tmp_path):
    """A filter is allowed when the rule covers it: "a/#" covers "a/+/b", "a/#" and "a"; "c/+"
    covers "c/x" and "c/+" but not "c/#" or "c/x/y"; "+/#" and "#" cover "#" but not "$SYS"
    topics; a shared subscription is judged by its filter."""
    b = acl_broker(make_broker, tmp_path, "user alice\ntopic read a/#\ntopic read c/+\n"
                   "user bob\ntopic read +/#\n")
    alice, bob = user(b, "alice"), user(b, "bob")
    want = {"a/+/b": True, "a/#": True, "a": True, "a/x/y/z": True, "b/#": False,
            "c/x": True, "c/+": True, "c/#": False, "c/x/y": False, "+/x": False,
            "#": False, "$share/g/a/+": True, "$share/g/c/#": False}
    got = {f: can_subscribe(alice, f) for f in want}
    assert got == want
    assert can_subscribe(bob, "#") and can_subscribe(bob, "x/y")
    assert not can_subscribe(bob, "$SYS/#")
    alice.close()
    bob.close()


PATTERNS = """\
pattern readwrite devices/%c/#
pattern read users/%u/inbox
pattern write users/%u/outbox/%c
"""


def test_patterns(make_broker, tmp_path):
    """%c is the client id, %u the user name, in every client's rules; a pattern naming a
    value the client lacks (an anonymous client's %u) does not apply."""
    b = acl_broker(make_broker, tmp_path, PATTERNS)
    a = user(b, "alice", client_id="dev1")
    assert can_publish(a, "devices/dev1/t") and can_subscribe(a, "devices/dev1/#")
    assert not can_publish(a, "devices/dev2/t") and not can_subscribe(a, "devices/+/t")
    assert can_subscribe(a, "users/alice/inbox") and not can_subscribe(a, "users/bob/inbox")
    assert not can_publish(a, "users/alice/inbox")
    assert can_publish(a, "users/alice/outbox/dev1")
    assert not can_publish(a, "users/alice/outbox/dev2")
    anon = user(b, None, client_id="dev2")
    assert can_publish(anon, "devices/dev2/t") and not can_subscribe(anon, "users/+/inbox")
    assert not can_publish(anon, "devices/dev1/t")
    a.close()
    anon.close()


@pytest.mark.parametrize("version", [4, 5])
def test_pattern_substitution_cannot_widen_rules(make_broker, tmp_path, version):
    """CVE-2017-7650: a client id "+" or "#" would turn devices/%c/# into devices/+/# (every
    device), "a/b" into another device's subtree; a user name "bob/x" would reach into bob's
    space. Such values make an allowing pattern match nothing. A deny pattern whose
    substitution is not a valid filter denies that client everything."""
    acl = PATTERNS + "pattern deny secret/%c/data\ntopic readwrite open/#\n" \
        "topic readwrite secret/#\n"
    b = acl_broker(make_broker, tmp_path, acl)
    victim = user(b, "alice", 5, client_id="a")
    for cid in ("+", "#", "a/b"):
        r = user(b, None, version, client_id=cid)
        assert not can_subscribe(r, "devices/+/#") and not can_subscribe(r, "devices/#")
        assert not can_subscribe(r, "devices/a/#") and not can_subscribe(r, "devices/a/b/#")
        if version == 5:
            assert not can_publish(r, "devices/a/b/x") and not can_publish(r, "devices/a/t")
        # The deny pattern: "+" and "a/b" give valid (wider) filters, which deny more;
        # "#" gives "secret/#/data", no filter at all, so that client is denied everything.
        if cid == "#":
            assert not can_subscribe(r, "open/#"), "deny pattern weakened for %r" % cid
        else:
            assert can_subscribe(r, "open/#")
            assert not can_subscribe(r, {"+": "secret/x/data", "a/b": "secret/a/b/data"}[cid])
        r.close()
    r = user(b, "bob/x", version, client_id="bx")
    assert not can_subscribe(r, "users/bob/x/inbox") and not can_subscribe(r, "users/+/inbox")
    assert can_subscribe(r, "devices/bx/#")  # its other, harmless pattern still applies
    r.close()
    r = user(b, "+", version, client_id="plus")
    assert not can_subscribe(r, "users/+/inbox") and not can_subscribe(r, "users/alice/inbox")
    r.close()
    ok = user(b, None, version, client_id="fine")
    assert can_subscribe(ok, "open/#") and can_subscribe(ok, "devices/fine/#")
    ok.close()
    victim.close()


def test_clientid_blocks(make_broker, tmp_path):
    """`clientid ID` blocks (moat's): the rules of the client id, for any user name; they add
    to the general rules of an anonymous client and to the user block of a user."""
    acl = "topic read status/#\nclientid sensor-7\ntopic write sensors/7/#\n" \
          "user alice\ntopic read alice/#\n"
    b = acl_broker(make_broker, tmp_path, acl)
    s7 = user(b, None, client_id="sensor-7")
    assert can_publish(s7, "sensors/7/t") and can_subscribe(s7, "status/#")
    s8 = user(b, None, client_id="sensor-8")
    assert not can_publish(s8, "sensors/7/t") and not can_publish(s8, "sensors/8/t")
    s7.send(b"\xe0\x00")  # DISCONNECT: the client id is free again
    s7.close()
    a7 = user(b, "alice", client_id="sensor-7")
    assert can_publish(a7, "sensors/7/t") and can_subscribe(a7, "alice/#")
    assert not can_subscribe(a7, "status/#")
    for r in (s8, a7):
        r.close()


def test_identity_blocks(make_broker, pki, tmp_path):
    """`identity NAME` blocks (moat's): rules for a TLS identity (here the certificate's CN
    with use_identity_as_username). device-1 gets them, device-2 (same CA) does not."""
    acl = write_file(tmp_path / "acl", "identity device-1\ntopic readwrite dev/1/#\n"
                     "option max_qos 1\n")
    b = make_broker(config=tls_listener(pki, "use_identity_as_username true\nacl_file %s\n"
                                        % acl), anonymous=False)
    rc, pr, d1 = connack(b.port, 5, ctx=client_ctx(pki, pki.dev1), client_id="d1")
    assert rc == 0 and pr.get("maximum_qos") == 1, pr
    assert can_publish(d1, "dev/1/t") and can_subscribe(d1, "dev/1/#")
    rc, pr, d2 = connack(b.port, 5, ctx=client_ctx(pki, pki.dev2), client_id="d2")
    assert rc == 0 and "maximum_qos" not in pr
    assert not can_publish(d2, "dev/1/t") and not can_subscribe(d2, "dev/1/#")
    d1.close()
    d2.close()


def test_identity_block_with_password_user(make_broker, pki, tmp_path):
    """A certificate identifies the client to the ACL even when the user name comes from a
    password: the identity block and the user block both apply."""
    acl = write_file(tmp_path / "acl", "identity device-1\ntopic write dev/1/#\n"
                     "user alice\ntopic read alice/#\n")
    pw = write_passwd(tmp_path / "passwd", USERS)
    b = make_broker(config=tls_listener(pki, "password_file %s\nacl_file %s\n" % (pw, acl)),
                    anonymous=False)
    rc, _, r = connack(b.port, 5, ctx=client_ctx(pki, pki.dev1), username="alice",
                       password="alice pw")
    assert rc == 0
    assert can_publish(r, "dev/1/t") and can_subscribe(r, "alice/#")
    r.close()
    rc, _, r = connack(b.port, 5, ctx=client_ctx(pki, pki.dev2), username="alice",
                       password="alice pw")
    assert rc == 0
    assert not can_publish(r, "dev/1/t") and can_subscribe(r, "alice/#")
    r.close()


def test_identity_block_psk(make_broker, tmp_path):
    """The PSK identity is the identity of `identity` blocks, even without
    use_identity_as_username (mosquitto_pub/sub -V 5 --psk: dev-b is told "Not authorized"
    and "All subscription requests were denied")."""
    if shutil.which("mosquitto_pub") is None or shutil.which("mosquitto_sub") is None:
        pytest.skip("mosquitto clients not installed")
    keys = {"dev-a": "00112233445566778899aabbccddeeff",
            "dev-b": "00112233445566778899aabbccddeef0"}
    psk = write_file(tmp_path / "psk", "".join("%s:%s\n" % kv for kv in keys.items()))
    acl = write_file(tmp_path / "acl", "identity dev-a\ntopic readwrite a/#\n")
    b = make_broker(config="psk_file %s\nacl_file %s\n" % (psk, acl), anonymous=False)

    def args(ident):
        return ["--psk", keys[ident], "--psk-identity", ident, "--tls-version", "tlsv1.3",
                "-V", "5"]
    rc, out = mosq(MOSQUITTO_PUB, b.port, *args("dev-a"), "-t", "a/x", "-m", "m", "-r",
                   "-q", "1")
    assert rc == 0 and out == "", out
    rc, out = mosq(MOSQUITTO_SUB, b.port, *args("dev-a"), "-t", "a/x", "-C", "1", "-W", "10")
    assert rc == 0 and out == "m\n", out
    rc, out = mosq(MOSQUITTO_PUB, b.port, *args("dev-b"), "-t", "a/x", "-m", "n", "-q", "1")
    assert "Not authorized" in out, out
    rc, out = mosq(MOSQUITTO_SUB, b.port, *args("dev-b"), "-t", "a/x", "-C", "1", "-W", "5")
    assert "All subscription requests were denied" in out, out
    assert {e["access"] for e in events(b, "acl_denied")} == {"publish", "subscribe"}
    assert {e["method"] for e in events(b, "acl_denied")} == {"psk"}


# ======================================================================================
# options
# ======================================================================================

def test_option_no_wildcard_subscriptions(make_broker, tmp_path):
    """5.0: CONNACK Wildcard Subscription Available 0, SUBACK 0xA2 for a filter with '+' or
    '#' (shared ones too); 3.1.1: SUBACK 0x80. Plain filters still work."""
    b = acl_broker(make_broker, tmp_path, "user alice\noption no_wildcard_subscriptions\n"
                   "topic readwrite a/#\nuser bob\ntopic readwrite a/#\n")
    a5 = user(b, "alice", 5)
    assert a5.connack_props.get("wildcard_sub_available") == 0
    assert a5.subscribe([("a/+", 1), ("a/#", 1), ("a/x", 1), ("$share/g/a/#", 1)], pid=4) == \
        [0xA2, 0xA2, 1, 0xA2]
    a3 = user(b, "alice", 4)
    assert a3.subscribe([("a/+", 1), ("a/x", 1)], pid=4) == [0x80, 1]
    b5 = user(b, "bob", 5)
    assert "wildcard_sub_available" not in b5.connack_props
    assert b5.subscribe([("a/+", 1)], pid=4) == [1]
    for r in (a5, a3, b5):
        r.close()


@pytest.mark.parametrize("version", [4, 5])
def test_option_max_qos(make_broker, tmp_path, version):
    """option max_qos 1: 5.0 CONNACK Maximum QoS 1; a subscription asking QoS 2 is granted
    1; a QoS 2 PUBLISH is a protocol error (5.0 DISCONNECT 0x9B; 3.1.1 the connection is
    closed). Deliveries are capped at the granted QoS."""
    b = acl_broker(make_broker, tmp_path, "user alice\noption max_qos 1\ntopic readwrite a/#\n"
                   "user bob\ntopic readwrite a/#\n")
    a = user(b, "alice", version)
    if version == 5:
        assert a.connack_props.get("maximum_qos") == 1
    assert a.subscribe([("a/#", 2)], pid=4) == [1]
    bob = user(b, "bob", 5)
    assert "maximum_qos" not in bob.connack_props
    bob.publish("a/q2", b"two", qos=2)
    got = a.publishes(1)
    assert got and got[0].qos == 1
    a.send(publish_packet("a/x", b"x", qos=2, pid=9, version=version))
    closed, pkts = a.wait_closed(5)
    assert closed
    if version == 5:
        assert pkts and pkts[-1][0] == 0xE0 and pkts[-1][1][0] == 0x9B, pkts
    else:
        assert not any(p[0] >> 4 == 5 for p in pkts), pkts
    bob.close()


@pytest.mark.parametrize("version", [4, 5])
def test_option_retain_false(make_broker, tmp_path, version):
    """option retain false: 5.0 CONNACK Retain Available 0; a retained PUBLISH gets
    DISCONNECT 0x9A (3.1.1: closed) and is not stored; plain publishes work."""
    b = acl_broker(make_broker, tmp_path, "user alice\noption retain false\n"
                   "topic readwrite a/#\nuser bob\ntopic readwrite a/#\n")
    a = user(b, "alice", version)
    if version == 5:
        assert a.connack_props.get("retain_available") == 0
    a.publish("a/plain", b"p", qos=1)
    a.send(publish_packet("a/kept", b"k", qos=1, pid=7, retain=True, version=version))
    closed, pkts = a.wait_closed(5)
    assert closed
    if version == 5:
        assert pkts and pkts[-1][0] == 0xE0 and pkts[-1][1][0] == 0x9A, pkts
    bob = user(b, "bob", 5)
    assert "retain_available" not in bob.connack_props
    assert bob.subscribe([("a/#", 1)], pid=2) == [1]
    assert bob.quiet(0.5) == []  # nothing retained
    bob.close()


# ======================================================================================
# the codes
# ======================================================================================

@pytest.mark.parametrize("version", [4, 5])
def test_denied_publish_codes_and_drops(make_broker, tmp_path, version):
    """A PUBLISH the ACL refuses: 5.0 PUBACK 0x87 (QoS 1), PUBREC 0x87 (QoS 2, the exchange
    ends there); 3.1.1 acknowledged as usual (PUBACK; PUBREC, PUBREL, PUBCOMP) and dropped;
    QoS 0 dropped. Nothing reaches the subscriber, the connection stays, and each refusal
    is a security event (access=publish)."""
    b = acl_broker(make_broker, tmp_path, "user alice\ntopic write ok/#\n"
                   "user bob\ntopic read #\ntopic write fence\ntopic read $SYS/#\n",
                   "sys_interval 1\n")
    sub = user(b, "bob", 5)
    assert sub.subscribe([("#", 2)], pid=1) == [2]
    a = user(b, "alice", version)
    for qos in (0, 1, 2):
        a.send(publish_packet("no/%d" % qos, b"x", qos=qos, pid=20 + qos, version=version))
        if qos == 1:
            p = a.expect(4)
            pid, rc, _ = parse_reason(p[0], p[1], version)
            assert pid == 21 and rc == (0x87 if version == 5 else 0)
            assert len(p[1]) == (3 if version == 5 else 2)
        elif qos == 2:
            p = a.expect(5)
            pid, rc, _ = parse_reason(p[0], p[1], version)
            assert pid == 22 and rc == (0x87 if version == 5 else 0)
            if version == 4:
                a.send(ack_packet(PUBREL, 22, version))
                p = a.expect(7)
                assert parse_reason(p[0], p[1], version)[0] == 22
    assert a.ping()
    assert a.publish("ok/1", b"fine", qos=1) == 0
    got = received_until_fence(sub, sub, "fence")
    assert got == ["ok/1"], got
    denied = [e for e in events(b, "acl_denied") if e["access"] == "publish"]
    assert sorted(e["topic"] for e in denied) == ["no/0", "no/1", "no/2"], denied
    # Counted as dropped ($SYS/broker/publish/messages/dropped, published every second).
    assert sub.subscribe([("$SYS/broker/publish/messages/dropped", 0)], pid=2) == [0]
    deadline, dropped = time.time() + 10, 0
    while dropped < 3 and time.time() < deadline:
        for m in sub.publishes(1, timeout=2):
            dropped = int(m.payload)
    assert dropped >= 3, dropped
    a.close()
    sub.close()


def test_denied_subscribe_codes_paho(make_broker, tmp_path):
    """paho-mqtt sees per-filter SUBACK codes: 5.0 0x87, 3.1.1 0x80, next to granted ones."""
    b = acl_broker(make_broker, tmp_path, "user alice\ntopic read ok/#\n")
    for version, denied in ((5, 0x87), (4, 0x80)):
        c = paho_login(b.port, version, username="alice", password="alice pw")
        try:
            assert c.subscribe([("ok/#", 1), ("no/#", 1)]) == [1, denied]
        finally:
            c.stop()


# ======================================================================================
# deliveries, retained messages, wills
# ======================================================================================

BEFORE = """\
user alice
topic read t/#
topic deny t/probe
user bob
topic write t/#
"""
AFTER = """\
user alice
topic read t/#
topic deny t/secret/#
user bob
topic write t/#
"""


@pytest.mark.parametrize("version", [4, 5])
def test_delivery_checked_after_reload(make_broker, tmp_path, version):
    """Every delivery is checked: alice subscribes to t/# and receives t/secret/x; the ACL
    file changes to deny t/secret/#, SIGHUP; her existing subscription no longer delivers
    t/secret/x, other topics still arrive. (A probe topic denied before and allowed after
    tells when the new rules are in force.)"""
    b = acl_broker(make_broker, tmp_path, BEFORE)
    alice, bob = user(b, "alice", version), user(b, "bob")
    assert alice.subscribe([("t/#", 1)], pid=1) == [1]
    bob.publish("t/secret/x", b"1", qos=1)
    assert received_until_fence(alice, bob, "t/fence") == ["t/secret/x"]
    write_file(b.acl_path, AFTER)
    reload(b)
    import time
    deadline = time.time() + 10
    while True:
        bob.publish("t/probe", b"p", qos=1)
        got = received_until_fence(alice, bob, "t/fence")
        if got == ["t/probe"]:
            break
        assert got == [] and time.time() < deadline, got
    bob.publish("t/secret/x", b"2", qos=1)
    bob.publish("t/other", b"3", qos=1)
    assert received_until_fence(alice, bob, "t/fence") == ["t/other"]
    assert alice.ping()
    alice.close()
    bob.close()


def test_denied_resend_does_not_block_the_session(make_broker, tmp_path):
    """A QoS 1 message in flight (sent, not acknowledged) when the client goes away, and
    denied by a reload before the client comes back: it is not resent, and it must not
    keep its place in the client's Receive Maximum window either, or a client with Receive
    Maximum 1 never gets another message."""
    b = acl_broker(make_broker, tmp_path, BEFORE)
    bob = user(b, "bob")
    cp = props(session_expiry=300, receive_maximum=1)
    a = user(b, "alice", 5, client_id="alice-rm1", clean=False, props=cp)
    assert a.subscribe([("t/#", 1)], pid=1) == [1]
    bob.publish("t/secret/x", b"in flight", qos=1)
    got = a.publishes(1, ack=False)
    assert got and got[0].topic == "t/secret/x"
    a.close()  # no PUBACK
    write_file(b.acl_path, AFTER)
    reload(b)
    time.sleep(0.2)  # the session is offline: nothing to wait for but the reload itself
    a = user(b, "alice", 5, client_id="alice-rm1", clean=False, props=cp)
    bob.publish("t/ok", b"after", qos=1)
    got = a.publishes(1, timeout=5)
    assert [m.topic for m in got] == ["t/ok"], \
        "the session got %r: the denied resend holds the Receive Maximum window" % got
    a.close()
    bob.close()


def test_retained_messages_filtered_by_read_rights(make_broker, tmp_path):
    """On subscribe, retained messages the subscriber may not read are not sent: alice
    (read r/#, deny r/secret) subscribing r/# gets r/public only."""
    b = acl_broker(make_broker, tmp_path, "user alice\ntopic read r/#\ntopic deny r/secret\n"
                   "user admin\ntopic readwrite #\n")
    admin = user(b, "admin")
    for t in ("r/public", "r/secret", "r/also"):
        assert admin.publish(t, t.encode(), qos=1, retain=True) in (0, 0x10)
    alice = user(b, "alice", 4)
    assert alice.subscribe([("r/#", 1)], pid=1) == [1]
    got = sorted(m.topic for m in alice.publishes(2))
    assert got == ["r/also", "r/public"]
    assert alice.subscribe([("r/secret", 1)], pid=2) == [0x80]
    assert alice.quiet(0.5) == []
    alice.close()
    admin.close()


@pytest.mark.parametrize("version", [4, 5])
def test_will_topic_checked_at_connect(make_broker, tmp_path, version):
    """A will on a topic the client may not write is refused at CONNECT: 5.0 CONNACK 0x87,
    3.1.1 return code 5; a security event says access=will. A permitted will is accepted."""
    b = acl_broker(make_broker, tmp_path, "user alice\ntopic write wills/alice\n")
    rc, _, _ = connack(b.port, version, username="alice", password="alice pw",
                       will=("wills/bob", b"gone", 1, False))
    assert rc == (0x87 if version == 5 else 5)
    e = wait_event(b, "acl_denied", access="will")
    assert e["topic"] == "wills/bob" and e["user"] == "alice"
    rc, _, r = connack(b.port, version, username="alice", password="alice pw",
                       will=("wills/alice", b"gone", 1, False))
    assert rc == 0
    r.close()


# ======================================================================================
# the file itself
# ======================================================================================

@pytest.mark.parametrize("version", [4, 5])
def test_empty_acl_denies_everything(make_broker, tmp_path, version):
    """An acl_file with no rules (comments only) denies every publish and subscription."""
    b = acl_broker(make_broker, tmp_path, "# nothing allowed yet\n")
    for r in (user(b, None, version), user(b, "alice", version)):
        assert r.subscribe([("#", 0), ("a", 1)], pid=1) == [DENIED[version]] * 2
        if version == 5:
            assert not can_publish(r, "a")
        assert r.ping()
        r.close()


def test_malformed_acl_stops_moatd_at_start(tmp_path):
    """A malformed line refuses the whole file, and moatd does not start; the message names
    the file and the line."""
    acl = write_file(tmp_path / "acl", "user alice\ntopic read a/#\ntopic sometimes b\n")
    rc, out = start_fails("listener 1 127.0.0.1\nacl_file %s\n" % acl)
    assert rc != 0
    assert '%s:3: unknown access "sometimes"' % acl in out, out
    acl = write_file(tmp_path / "acl2", "user alice\noption max_qos 3\n")
    rc, out = start_fails("listener 1 127.0.0.1\nacl_file %s\n" % acl)
    assert rc != 0 and "%s:2:" % acl in out, out


def test_malformed_acl_on_reload_keeps_old_rules(make_broker, tmp_path):
    """A broken ACL file on reload is refused (auth_reload_failed ... FILE:LINE): the old
    rules stay in force for live and new sessions; a fixed file is taken at the next reload."""
    b = acl_broker(make_broker, tmp_path, "user alice\ntopic readwrite a/#\n")
    alice = user(b, "alice")
    assert alice.subscribe([("a/#", 1)], pid=1) == [1]
    write_file(b.acl_path, "user alice\ntopic readwrite b/#\npattern\n")
    reload(b)
    line = wait_log(b, "auth_reload_failed")[0]
    assert "%s:3:" % b.acl_path in line, line
    bob = user(b, "alice", 5)
    assert can_publish(bob, "a/x") and not can_publish(bob, "b/x")
    assert received_until_fence(alice, bob, "a/fence") == ["a/x"]
    write_file(b.acl_path, "user alice\ntopic readwrite b/#\n")
    reload(b)
    import time
    deadline = time.time() + 10
    while not can_publish(bob, "b/x"):
        assert time.time() < deadline, "fixed ACL not taken"
    assert not can_publish(bob, "a/x")
    alice.close()
    bob.close()


def test_claimed_user_name_gets_no_user_block(make_broker, tmp_path):
    """On a listener without a password file that lets anyone in, a user name is only
    claimed: the ACL treats such a client as anonymous (the general lines), never as the
    user it names. Mosquitto would give it that user's block."""
    path = write_file(tmp_path / "acl", "topic read public/#\nuser admin\ntopic readwrite #\n")
    b = make_broker(config="acl_file %s\n" % path, anonymous=True)
    fake = login(b.port, 5, client_id=uniq("fake"), username="admin")
    assert can_subscribe(fake, "public/#")
    assert not can_subscribe(fake, "secret/#")
    assert not can_publish(fake, "secret/x")
    fake.close()
