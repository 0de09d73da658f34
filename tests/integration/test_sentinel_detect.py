"""Detect-table items the other attack files do not cover, each against the real moatd:

  - abnormal termination: one address dropping connection after connection without
    DISCONNECT (abnormal_close; banned here to show the response, and the ban expires);
  - undeliverable messages: a client publishing to topics no one subscribes to
    (undeliverable; disconnected here), while published-and-delivered traffic is not counted;
  - client availability: a device that was steadily online goes silent and its keepalive
    expires: an "availability" event (a report, not a response), and none for a device
    that says goodbye with DISCONNECT;
  - Respond, "block compromised telemetry channels": a deny rule in the ACL and SIGHUP
    stop a topic for every live session at once, others keep flowing;
  - a parallel password brute force: the password gate holds the hashes to the detector's
    threshold plus the checks in flight, and the address is banned until the step ends;
  - reloads: each is an audit event (applied, or refused with the old configuration kept),
    and so is lockdown on or off; SIGHUP retunes the detectors and the allow-list.

The attacker connects from 127.0.0.2 (the compromised gateway of the ACL test from the
allow-listed 127.0.0.1); a bystander on 127.0.0.1 keeps a numbered QoS 1 sequence whole
throughout. The scene, the bystander and the checks are sentinellib.py's.
"""
import time

from authlib import moat_passwd
from moatlib import connect_packet, make_broker, publish_packet, wait_for, watchdog  # noqa: F401
from sentinellib import (ATTACKER, GOOD, V5_ADMINISTRATIVE_ACTION,  # noqa: F401
                         V5_SERVER_BUSY, ban_runs_its_course, banned, detection,
                         disconnected, has, no_detection, raw_connack, scene, sentenced)


def test_abnormal_termination_from_one_address(scene):
    watch, by = scene.begin("sentinel_abnormal_close 5 30 ban\nsentinel_ban_steps 2\n")
    for i in range(5):
        r = scene.session(ATTACKER, client_id="dropper-%d" % i)
        r.s.close()  # no DISCONNECT: the network "fails"
        scene.audit.wait_count(i + 1, 5, kind="abnormal_close", host=ATTACKER)
    ban = sentenced(scene, watch, "abnormal_close: 5 in 30 s by address -> ban", step=2)
    # refused at accept while banned, and the ban expires by itself (2 s here)
    ban_runs_its_course(scene, ban, step=2)
    by.check()


def test_undeliverable_messages(scene):
    watch, by = scene.begin("sentinel_undeliverable 20 30 disconnect\n")
    hmi = scene.client(GOOD, client_id="plant-hmi", version=5)
    assert hmi.attempt() == 0
    assert hmi.subscribe("plant/status", qos=0) == [0]
    r = scene.session(ATTACKER, 5, client_id="shouter")
    # many publishes that reach a subscriber are not counted ...
    r.send(b"".join(publish_packet("plant/status", b"999999", version=5) for _ in range(50)))
    assert wait_for(lambda: len(hmi.payloads("plant/status")) == 50, 5)
    no_detection(scene, "undeliverable")
    # ... publishes into the void are
    r.send(b"".join(publish_packet("void/%d" % i, b"x", version=5) for i in range(25)))
    first, body = r.recv_packet(timeout=5)
    assert first == 0xE0 and body[0] == V5_ADMINISTRATIVE_ACTION, (hex(first), body)
    assert r.closed()
    disconnected(scene, watch, "undeliverable: 20 in 30 s by client id -> disconnect",
                 client_id="shouter")
    assert len(scene.audit.events(kind="no_subscriber", client_id="shouter")) >= 20
    by.check()


def test_availability_event_for_a_steady_device(scene):
    watch, by = scene.begin("sentinel_availability 2\n")
    # keepalive 1: the broker gives up 1.5 s after the device falls silent
    steady = scene.client(GOOD, client_id="meter-7", version=4, keepalive=1)
    polite = scene.client(GOOD, client_id="meter-8", version=4, keepalive=1)
    assert steady.attempt() == 0 and polite.attempt() == 0
    time.sleep(2.5)  # both "steady" (online longer than 2 s)
    polite.stop()  # DISCONNECT
    steady.c.loop_stop()  # the device dies: no more PINGREQ, no DISCONNECT
    ev = scene.audit.wait(8, kind="availability", client_id="meter-7")
    assert ev["reason"].endswith("then keepalive_timeout"), ev
    watch.wait("availability", client_id="meter-7")
    # a report, not a response: nothing is banned or kicked; and only the device that died
    # (not meter-8, nor the bystander, still online) is reported
    assert scene.audit.events(kind="banned") == [] and scene.audit.events(kind="kicked") == []
    assert [e["client_id"] for e in scene.audit.events(kind="availability")] == ["meter-7"]
    steady.close_socket()
    by.check()


def test_block_a_compromised_channel_live(scene):
    acl = scene.tmp / "acl"
    rules = "pattern readwrite plant/#\npattern readwrite bystander/#\npattern read $SYS/#\n"
    acl.write_text(rules)
    watch, by = scene.begin("acl_file %s\n" % acl)
    scada = scene.client(GOOD, client_id="scada", version=5)
    assert scada.attempt() == 0
    assert scada.subscribe("plant/#", qos=1) == [1]
    gw = scene.session(GOOD, 5, client_id="line3-gw")
    assert gw.publish("plant/line3/temp", b"v", qos=1, pid=1) == 0
    assert wait_for(lambda: scada.payloads("plant/line3/temp"), 5)
    # line 3 is compromised: the operator blocks its channel for everyone, live
    acl.write_text(rules + "pattern deny plant/line3/#\n")
    scene.reload()
    before = len(scada.payloads("plant/line3/temp"))
    assert gw.publish("plant/line3/temp", b"v", qos=1, pid=2) == 0x87  # not authorized
    assert gw.publish("plant/line2/temp", b"v", qos=1, pid=3) == 0
    assert wait_for(lambda: scada.payloads("plant/line2/temp"), 5)
    assert len(scada.payloads("plant/line3/temp")) == before
    scene.audit.wait(kind="acl_denied", client_id="line3-gw", topic="plant/line3/temp")
    watch.wait("acl_denied", client_id="line3-gw", topic="plant/line3/temp")
    assert scada.disconnects == []
    by.check()


def test_parallel_brute_force_cannot_buy_hashes_in_bulk(scene):
    """Sixty CONNECTs with wrong passwords sent at once from one address: the password
    gate counts failures and checks in flight before the pool, so at most the detector's
    threshold plus the checks in flight (8) are ever hashed; the rest are refused at once
    (3.1.1: CONNACK 5 or 3) without a hash. One guess after another then bans the address,
    until the ban's step is over."""
    pw = scene.tmp / "passwd"
    moat_passwd("-c", "-b", pw, "alice", "correct horse")
    watch, by = scene.begin("password_file %s\nsentinel_auth_fail_addr 10 60 ban\n" % pw)
    conns = [scene.raw() for _ in range(60)]
    for i, r in enumerate(conns):
        r.send(connect_packet("guess-%d" % i, version=4, username="alice",
                              password="guess-%d" % i))
    codes = []
    for r in conns:
        p = r.recv_packet(timeout=20)
        codes.append(p[1][1] if p else None)
        r.close()
    assert all(c in (3, 4, 5, None) for c in codes), codes
    # 3: 0x9F in 3.1.1
    assert codes.count(3) >= 40, "the burst was not held to 8 checks at once: %r" % codes
    scene.audit.wait(kind="rate_limited", reason=has("logins at once"), host=ATTACKER)
    # then one guess after another, until the address is banned
    for i in range(30):
        rc, r = raw_connack(scene.port, ATTACKER, 4, username="alice", password="x%d" % i)
        if rc is None:  # closed at accept: banned
            break
        assert rc in (3, 4, 5), rc  # 3: the gate (0x9F) before the ban lands
    ban = sentenced(scene, watch, "auth_fail_addr: 10 in 60 s by address -> ban")
    hashed = len(scene.audit.events(kind="auth_failure", username="alice"))
    assert 10 <= hashed <= 10 + 8, "%d wrong passwords were hashed" % hashed
    ban_runs_its_course(scene, ban, lambda: scene.login(ATTACKER, "alice", "correct horse") == 0)
    by.check()


def test_reload_and_lockdown_are_audited(scene):
    """A reload is an event (applied, or refused with the old configuration kept), and so is
    switching lockdown on or off; under lockdown a stranger is refused (5.0: 0x89) while a
    session that was already connected keeps working."""
    watch, by = scene.begin("")
    scene.reload(add="lockdown true\n")
    scene.audit.wait(kind="lockdown", reason="on")
    watch.wait("lockdown", reason="on")
    assert scene.login(ATTACKER, client_id="stranger") == V5_SERVER_BUSY
    scene.audit.wait(kind="connection_refused", reason="lockdown", client_id="stranger")
    # a broken file is refused and reported; lockdown stays on
    scene.reload(add="no_such_directive 1\n", outcome="refused, the old configuration stays")
    assert scene.login(ATTACKER, client_id="stranger") == V5_SERVER_BUSY
    scene.reload(drop="lockdown true\nno_such_directive 1\n")
    scene.audit.wait(kind="lockdown", reason="off")
    assert scene.login(ATTACKER, client_id="stranger") == 0
    by.check()


def test_reload_retunes_detectors_and_allow_list(scene):
    """SIGHUP hands new detector settings and a new allow-list to the running sentinel."""
    watch, by = scene.begin("sentinel_violations off\n")

    def violate(n):
        r = scene.raw()
        r.send(b"\x10\x00")  # a CONNECT with no body
        assert r.wait_closed(5)[0]
        scene.audit.wait_count(n, kind="protocol_violation", host=ATTACKER)

    violate(1)
    assert scene.audit.events(kind="detection") == []
    scene.reload(add="sentinel_violations 1 60 ban\nsentinel_allow 127.0.0.2\n")
    violate(2)  # 127.0.0.2 is allow-listed now: detected, not banned
    det = detection(scene, "violations", watch, host=ATTACKER)
    assert det["reason"] == "violations: 1 in 60 s by address -> log (allow-listed)", det
    assert scene.audit.events(kind="banned") == []
    scene.reload(drop="sentinel_allow 127.0.0.2\n")
    violate(3)
    ban_runs_its_course(scene, banned(scene, watch, host=ATTACKER))
    by.check()
