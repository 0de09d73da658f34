"""Detect-table items the other attack files do not cover, each against the real moatd:

  - abnormal termination: one address dropping connection after connection without
    DISCONNECT (abnormal_close; banned here to show the response, and the ban expires);
  - undeliverable messages: a client publishing to topics no one subscribes to
    (undeliverable; disconnected here), while published-and-delivered traffic is not counted;
  - client availability: a device that was steadily online goes silent and its keepalive
    expires: an "availability" event (a report, not a response), and none for a device
    that says goodbye with DISCONNECT;
  - Respond, "block compromised telemetry channels": a deny rule in the ACL and SIGHUP
    stop a topic for every live session at once, others keep flowing.

The attacker connects from 127.0.0.2; a bystander on 127.0.0.1 keeps a numbered QoS 1
sequence whole throughout.
"""
import os
import signal
import time

import paho.mqtt.client as mqtt

from moatlib import connect_packet, publish_packet
from sentinellib import (ATTACKER, Bystander, audit_has, raw_from, sentinel_broker,  # noqa: F401
                         wait_for)


def connack_ok(r):
    first, body = r.recv_packet()
    assert first == 0x20 and body[1] == 0, (first, body)


def test_abnormal_termination_from_one_address(sentinel_broker):
    b = sentinel_broker("sentinel_abnormal_close 5 30 ban\nsentinel_ban_steps 2\n")
    by = Bystander(b.port)
    for i in range(5):
        r = raw_from(b.port)
        r.send(connect_packet("dropper-%d" % i, version=4))
        connack_ok(r)
        r.s.close()  # no DISCONNECT: the network "fails"
        assert wait_for(lambda: len(audit_has(b.audit, "abnormal_close", ATTACKER)) > i, 5)
    det = wait_for(lambda: audit_has(b.audit, "detection", "abnormal_close"))
    assert det and det[0]["reason"].startswith("abnormal_close: 5 in 30 s by address"), det
    assert wait_for(lambda: audit_has(b.audit, "banned", ATTACKER))
    # refused at accept while banned: closed before any CONNACK
    r = raw_from(b.port)
    try:
        r.send(connect_packet("dropper-x", version=4))
    except OSError:
        pass
    assert r.recv_packet(timeout=2) is None
    assert wait_for(lambda: audit_has(b.audit, "ban_hit", ATTACKER))
    # the ban expires by itself (2 s here)
    time.sleep(2.2)
    r = raw_from(b.port)
    r.send(connect_packet("dropper-y", version=4))
    connack_ok(r)
    r.close()
    by.finish()


def test_undeliverable_messages(sentinel_broker):
    b = sentinel_broker("sentinel_undeliverable 20 30 disconnect\n")
    by = Bystander(b.port)
    r = raw_from(b.port)
    r.send(connect_packet("shouter", version=5))
    connack_ok(r)
    # many publishes that reach a subscriber are not counted ...
    r.send(b"".join(publish_packet("plant/status", b"999999", version=5) for _ in range(50)))
    time.sleep(0.5)
    assert not audit_has(b.audit, "detection", "undeliverable")
    # ... publishes into the void are
    r.send(b"".join(publish_packet("void/%d" % i, b"x", version=5) for i in range(25)))
    first, body = r.recv_packet(timeout=5)
    assert first == 0xE0 and body[0] == 0x98, (hex(first), body)
    assert r.closed()
    assert wait_for(lambda: audit_has(b.audit, "detection", "undeliverable"))
    assert len(audit_has(b.audit, "no_subscriber", "shouter")) >= 20
    assert wait_for(lambda: audit_has(b.audit, "kicked", "shouter"))
    # the bystander got the 50 extra "999999" too; drop them before its check
    by.got[:] = [n for n in by.got if n != 999999]
    by.finish()


def test_availability_event_for_a_steady_device(sentinel_broker):
    b = sentinel_broker("sentinel_availability 2\n")
    steady = mqtt.Client(client_id="meter-7", protocol=mqtt.MQTTv311)
    # keepalive 1: the broker gives up 1.5 s after the device falls silent
    steady.connect("127.0.0.1", b.port, keepalive=1)
    steady.loop_start()
    polite = mqtt.Client(client_id="meter-8", protocol=mqtt.MQTTv311)
    polite.connect("127.0.0.1", b.port, keepalive=1)
    polite.loop_start()
    time.sleep(2.5)  # both "steady" (online longer than 2 s)
    polite.disconnect()
    polite.loop_stop()
    steady.loop_stop()  # the device dies: no more PINGREQ, no DISCONNECT
    ev = wait_for(lambda: audit_has(b.audit, "availability", "meter-7"), 8)
    assert ev, "no availability event"
    assert "keepalive_timeout" in ev[0]["reason"]
    assert not audit_has(b.audit, "availability", "meter-8")
    # a report, not a response: nothing is banned or kicked
    assert not audit_has(b.audit, "banned") and not audit_has(b.audit, "kicked")
    steady.socket().close()


def test_block_a_compromised_channel_live(sentinel_broker, tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("pattern readwrite plant/#\n")
    b = sentinel_broker("acl_file %s\n" % acl)
    got = []
    sub = mqtt.Client(client_id="scada", protocol=mqtt.MQTTv5)
    sub.on_message = lambda c, u, m: got.append(m.topic)
    sub.connect("127.0.0.1", b.port)
    sub.loop_start()
    sub.subscribe("plant/#", qos=1)
    r = raw_from(b.port, "127.0.0.1")
    r.send(connect_packet("line3-gw", version=5))
    connack_ok(r)
    time.sleep(0.3)

    def publish(topic, pid):
        r.send(publish_packet(topic, b"v", qos=1, pid=pid, version=5))
        first, body = r.recv_packet()
        assert first >> 4 == 4
        return body[2] if len(body) > 2 else 0
    assert publish("plant/line3/temp", 1) == 0
    assert wait_for(lambda: "plant/line3/temp" in got, 5)
    # line 3 is compromised: the operator blocks its channel for everyone, live
    acl.write_text("pattern readwrite plant/#\npattern deny plant/line3/#\n")
    n = b.output().count("reload")
    b.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: b.output().count("reload") > n, 5)
    time.sleep(0.5)
    got.clear()
    assert publish("plant/line3/temp", 2) == 0x87  # not authorized
    assert publish("plant/line2/temp", 3) == 0
    assert wait_for(lambda: "plant/line2/temp" in got, 5)
    assert "plant/line3/temp" not in got
    assert wait_for(lambda: audit_has(b.audit, "acl_denied", "plant/line3/temp"))
    r.close()
    sub.disconnect()
    sub.loop_stop()
    assert os.path.exists(b.audit)


def test_parallel_brute_force_cannot_buy_hashes_in_bulk(sentinel_broker, tmp_path):
    """Sixty CONNECTs with wrong passwords sent at once from one address: the password
    gate counts failures and checks in flight before the pool, so at most the detector's
    threshold plus the checks in flight (8) are ever hashed; the rest are refused at once
    (3.1.1: CONNACK 5 or 3) without a hash."""
    from authlib import moat_passwd
    pw = tmp_path / "passwd"
    moat_passwd("-c", "-b", pw, "alice", "correct horse")
    b = sentinel_broker("password_file %s\nallow_anonymous false\n"
                        "sentinel_auth_fail_addr 10 60 ban\n" % pw)
    conns = [raw_from(b.port) for _ in range(60)]
    for i, r in enumerate(conns):
        r.send(connect_packet("guess-%d" % i, version=4, username="alice",
                              password="guess-%d" % i))
    codes = []
    for r in conns:
        p = r.recv_packet(timeout=20)
        codes.append(p[1][1] if p else None)
        r.close()
    assert all(c in (3, 4, 5, None) for c in codes), codes
    assert codes.count(3) >= 40, "the burst was not held to 8 checks at once: %r" % codes  # 0x9F in 3.1.1
    assert wait_for(lambda: audit_has(b.audit, "rate_limited", "logins at once"))
    # then one guess after another, until the address is banned
    for i in range(30):
        r = raw_from(b.port)
        try:
            r.send(connect_packet("seq-%d" % i, version=4, username="alice", password="x%d" % i))
        except OSError:
            pass
        p = r.recv_packet(timeout=10)
        r.close()
        if p is None:  # closed at accept: banned
            break
        assert p[1][1] in (3, 4, 5), p  # 3: the gate (0x9F) before the ban lands
    assert wait_for(lambda: audit_has(b.audit, "banned", ATTACKER))
    hashed = len(audit_has(b.audit, "auth_failure", "alice"))
    assert 10 <= hashed <= 10 + 8, "%d wrong passwords were hashed" % hashed


def test_reload_and_lockdown_are_audited(sentinel_broker):
    """A reload is an event (applied, or refused with the old configuration kept), and so is
    switching lockdown on or off; under lockdown a stranger is refused (5.0: 0x89) while a
    session that was already connected keeps working."""
    b = sentinel_broker("")
    by = Bystander(b.port)
    with open(b.conf, "a") as f:
        f.write("lockdown true\n")
    b.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: audit_has(b.audit, "lockdown", '"on"'))
    assert audit_has(b.audit, "reload", "applied")
    r = raw_from(b.port)
    r.send(connect_packet("stranger", version=5))
    first, body = r.recv_packet()
    assert first == 0x20 and body[1] == 0x89
    assert wait_for(lambda: audit_has(b.audit, "connection_refused", "lockdown"))
    # a broken file is refused and reported; lockdown stays on
    with open(b.conf, "a") as f:
        f.write("no_such_directive 1\n")
    b.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: audit_has(b.audit, "reload", "refused"))
    text = open(b.conf).read().replace("lockdown true\n", "").replace("no_such_directive 1\n", "")
    with open(b.conf, "w") as f:
        f.write(text)
    b.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: audit_has(b.audit, "lockdown", '"off"'))
    r = raw_from(b.port)
    r.send(connect_packet("stranger", version=5))
    first, body = r.recv_packet()
    assert first == 0x20 and body[1] == 0
    r.close()
    by.finish()


def test_reload_retunes_detectors_and_allow_list(sentinel_broker):
    """SIGHUP hands new detector settings and a new allow-list to the running sentinel."""
    b = sentinel_broker("sentinel_violations off\nsentinel_ban_steps 30\n")

    def violate():
        r = raw_from(b.port)
        r.send(b"\x10\x00")  # a CONNECT with no body
        assert r.closed()

    def reload(extra):
        with open(b.conf, "a") as f:
            f.write(extra)
        n = len(audit_has(b.audit, "reload"))
        b.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: len(audit_has(b.audit, "reload", "applied")) > n)

    violate()
    time.sleep(0.3)
    assert not audit_has(b.audit, "detection")
    reload("sentinel_violations 1 60 ban\nsentinel_allow 127.0.0.2\n")
    violate()  # 127.0.0.2 is allow-listed now: detected, not banned
    det = wait_for(lambda: audit_has(b.audit, "detection", "violations"))
    assert "(allow-listed)" in det[0]["reason"]
    assert not audit_has(b.audit, "banned")
    text = open(b.conf).read().replace("sentinel_allow 127.0.0.2\n", "")
    with open(b.conf, "w") as f:
        f.write(text)
    reload("")
    violate()
    assert wait_for(lambda: audit_has(b.audit, "banned", ATTACKER))
