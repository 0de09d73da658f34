"""Authentication (issue 5) against real clients: paho-mqtt 3.1.1 and 5.0, mosquitto_pub/sub,
Debian's mosquitto_passwd, raw MQTT 5.0 for the SCRAM exchange (scram_client.py), and the
test PKI (tls_pki.py) for client certificates.

What is proved:
- a password file made by Debian's mosquitto_passwd (prompting mode and -b, $7$; and $6$) is
  accepted unchanged, and left unchanged; files made by `moat passwd` with each -H work with
  paho and mosquitto clients;
- a wrong password and an unknown user get the same code (3.1.1: 4, 5.0: 0x86) and the same
  timing envelope; a user name with a password file never falls back to anonymous;
- anonymous clients: allowed on a loopback listener that does not say, refused with
  `allow_anonymous false` (3.1.1: 5, 5.0: 0x87);
- each method alone (password, certificate identity, PSK, SCRAM-SHA-256, SCRAM-SHA-512) and
  chained with auth_methods; two factors (require_certificate + certificate+password);
- auth_rehash turns a $7$ entry into $argon2id$ after a login, and the session goes on;
- SIGHUP: a removed user and a changed password lose their sessions (5.0 DISCONNECT 0x98,
  "security kind=credential_revoked"), other sessions stay;
- a storm of wrong-password CONNECTs (hashing on the auth threads) does not stop two
  connected clients from exchanging messages.

Every broker listens on 127.0.0.1 only; every wait is bounded. The only timing assertion is
the deliberate one about equal refusal times for existing and missing users.
"""
import selectors
import shutil
import socket
import statistics
import threading
import time

import pytest

from authlib import (MOSQUITTO_PUB, MOSQUITTO_SUB, V3_BAD_USER_OR_PASSWORD,  # noqa: F401
                     V3_NOT_AUTHORIZED, V5_BAD_AUTH_METHOD, V5_BAD_USER_OR_PASSWORD,
                     V5_NOT_AUTHORIZED, client_ctx, connack, echo, entries, events, free_port,
                     login, moat_passwd, mosq, mosquitto_entry, mosquitto_passwd, paho_attempt,
                     paho_login, reload, roundtrip, scram_login, start_fails, template_broker,
                     timed_refusal, tls_listener, uniq, wait_event, wait_log, write_file,
                     write_passwd)
from moatlib import connect_packet, make_broker, parse_reason, wait_for, watchdog  # noqa: F401
from tls_pki import pki  # noqa: F401  (a fixture)

for tool in ("mosquitto_passwd", "mosquitto_pub", "mosquitto_sub"):
    if shutil.which(tool) is None:
        pytest.skip("%s not installed: apt-get install mosquitto-clients" % tool,
                    allow_module_level=True)

REFUSED = {4: V3_BAD_USER_OR_PASSWORD, 5: V5_BAD_USER_OR_PASSWORD}
NOT_AUTHORIZED = {4: V3_NOT_AUTHORIZED, 5: V5_NOT_AUTHORIZED}


def pw_broker(make_broker, path, extra="", anonymous=False):
    return make_broker(config="password_file %s\n%s" % (path, extra), anonymous=anonymous)


def mosq_roundtrip(port, auth, topic=None):
    """mosquitto_pub publishes a retained message with auth (a list of arguments), and
    mosquitto_sub with the same receives it."""
    topic = topic or uniq("mq")
    payload = uniq("p")
    rc, out = mosq(MOSQUITTO_PUB, port, *auth, "-t", topic, "-m", payload, "-r", "-q", "1")
    assert rc == 0, out
    rc, out = mosq(MOSQUITTO_SUB, port, *auth, "-t", topic, "-C", "1", "-W", "10")
    assert rc == 0 and out.strip() == payload, out


def paho_roundtrip(port, version, **kw):
    """Two paho clients with the same credentials exchange a message."""
    topic = uniq("pr")
    sub = paho_login(port, version, **kw)
    pub = paho_login(port, version, **kw)
    try:
        sub.subscribe(topic, 1)
        roundtrip(sub, pub, topic)
    finally:
        sub.stop()
        pub.stop()


def alive(r):
    """A raw session still answers PINGREQ."""
    return r.ping(timeout=5)


# ======================================================================================
# password files
# ======================================================================================

def test_mosquitto_passwd_file_accepted_unchanged(make_broker, tmp_path):
    """A file made by Debian's mosquitto_passwd: the prompting mode (password twice on
    standard input) and -b write $7$ (PBKDF2-SHA512, 101 iterations); -H sha512 writes 1.x's
    $6$. moatd reads it as it is; paho (3.1.1, 5.0) and mosquitto_pub/sub log in; the file is
    byte for byte the same afterwards (no auth_rehash)."""
    f = tmp_path / "passwd"
    mosquitto_passwd("-c", f, "alice", input=b"alice pw\nalice pw\n")
    mosquitto_passwd("-b", f, "bob", "bob:pw with spaces")
    mosquitto_passwd("-H", "sha512", "-b", f, "carol", "carol pw")
    e = entries(f)
    assert e["alice"].startswith("$7$101$") and e["bob"].startswith("$7$101$")
    assert e["carol"].startswith("$6$")
    before = f.read_bytes()
    b = pw_broker(make_broker, f)
    for user, pw in (("alice", "alice pw"), ("bob", "bob:pw with spaces"),
                     ("carol", "carol pw")):
        for version in (4, 5):
            paho_roundtrip(b.port, version, username=user, password=pw)
        mosq_roundtrip(b.port, ["-u", user, "-P", pw])
        for version in (4, 5):
            rc, c = paho_attempt(b.port, version, username=user, password=pw + "x")
            assert rc == REFUSED[version]
    wait_event(b, "auth_success", user="carol", method="password")
    assert f.read_bytes() == before


@pytest.mark.parametrize("algo,prefix", [("argon2id", "$argon2id$"),
                                         ("sha512-pbkdf2", "$7$210000$"),
                                         ("scram-sha-256", "$scram-sha-256$"),
                                         ("scram-sha-512", "$scram-sha-512$")])
def test_moat_passwd_algorithms(make_broker, tmp_path, algo, prefix):
    """`moat passwd -H ALGO` entries (the SCRAM ones too) check a plain MQTT password: paho
    3.1.1 and 5.0 and mosquitto_pub/sub get in, a wrong password does not."""
    f = tmp_path / "passwd"
    moat_passwd("-c", "-b", "-H", algo, f, "dev", "s3cret pw")
    moat_passwd("-H", algo, f, "other", input=b"other pw\n")  # prompting mode, stdin
    assert entries(f)["dev"].startswith(prefix) and entries(f)["other"].startswith(prefix)
    b = pw_broker(make_broker, f)
    paho_roundtrip(b.port, 4, username="dev", password="s3cret pw")
    paho_roundtrip(b.port, 5, username="other", password="other pw")
    mosq_roundtrip(b.port, ["-u", "dev", "-P", "s3cret pw"])
    for version in (4, 5):
        assert paho_attempt(b.port, version, username="dev", password="other pw")[0] == \
            REFUSED[version]
    e = wait_event(b, "auth_failure", user="dev")
    assert e["reason"] == "wrong user name or password" and e["method"] == "password"


def test_wrong_password_and_unknown_user_look_the_same(make_broker, tmp_path):
    """The client learns nothing: the same code for a wrong password and a missing user
    (paho 3.1.1: 4, 5.0: 0x86; mosquitto_pub: the same exit status and message); a user name
    without a password is refused the same way. The log says why."""
    f = write_passwd(tmp_path / "passwd", {"alice": "right"})
    b = pw_broker(make_broker, f)
    for version in (4, 5):
        wrong = paho_attempt(b.port, version, username="alice", password="wrong")[0]
        missing = paho_attempt(b.port, version, username="nobody", password="wrong")[0]
        assert wrong == missing == REFUSED[version]
        assert connack(b.port, version, username="alice")[0] == REFUSED[version]
    w = mosq(MOSQUITTO_PUB, b.port, "-u", "alice", "-P", "wrong", "-t", "t", "-m", "x")
    m = mosq(MOSQUITTO_PUB, b.port, "-u", "nobody", "-P", "wrong", "-t", "t", "-m", "x")
    assert w == m and w[0] != 0, (w, m)
    assert "bad user name or password" in w[1]
    fails = events(b, "auth_failure")
    assert {e["user"] for e in fails} == {"alice", "nobody"}
    assert {e["reason"] for e in fails if e["method"] == "password"} == \
        {"wrong user name or password"}
    assert any(e["reason"] == "user name without a password" for e in fails)


@pytest.mark.parametrize("algo", ["argon2id", "sha512-pbkdf2"])
def test_same_timing_envelope(make_broker, tmp_path, algo):
    """A security property, not a speed one: refusing a wrong password costs what refusing
    an unknown user costs (the unknown user is checked against a dummy entry of the file's
    algorithm), so the time does not tell whether the user exists. 10 attempts of each,
    interleaved; the medians are within a factor of 3 of each other."""
    f = tmp_path / "passwd"
    moat_passwd("-c", "-b", "-H", algo, f, "alice", "right")
    moat_passwd("-b", "-H", algo, f, "bob", "bob's")
    b = pw_broker(make_broker, f)
    timed_refusal(b.port, 4, "alice", "warm-up")
    known, unknown = [], []
    for i in range(10):
        dt, rc = timed_refusal(b.port, 4, "alice", "wrong%d" % i)
        assert rc == V3_BAD_USER_OR_PASSWORD
        known.append(dt)
        dt, rc = timed_refusal(b.port, 4, "nobody%d" % i, "wrong%d" % i)
        assert rc == V3_BAD_USER_OR_PASSWORD
        unknown.append(dt)
    mk, mu = statistics.median(known), statistics.median(unknown)
    assert max(mk, mu) <= 3 * min(mk, mu), \
        "wrong password %.1f ms, unknown user %.1f ms (medians)" % (mk * 1e3, mu * 1e3)


# ======================================================================================
# anonymous clients
# ======================================================================================

def test_anonymous_allowed_by_default_on_loopback(template_broker):
    """A listener on 127.0.0.1 without allow_anonymous lets anonymous clients in."""
    b = template_broker("listener {port} 127.0.0.1\n")
    wait_log(b, "listening address=127.0.0.1 port=%d protocol=mqtt tls=no anonymous=allowed"
             % b.port)
    for version in (4, 5):
        paho_roundtrip(b.port, version)
    wait_event(b, "auth_success", method="anonymous")


def test_allow_anonymous_false_refuses(make_broker, tmp_path):
    """allow_anonymous false: anonymous clients are refused with "not authorized"
    (3.1.1: 5, 5.0: 0x87), mosquitto_pub too; the log says why."""
    b = make_broker(anonymous=False)
    wait_log(b, "anonymous=refused")
    for version in (4, 5):
        assert paho_attempt(b.port, version)[0] == NOT_AUTHORIZED[version]
    rc, out = mosq(MOSQUITTO_PUB, b.port, "-t", "t", "-m", "x")
    assert rc != 0 and "not authorised" in out, out
    e = wait_event(b, "auth_failure", method="anonymous")
    assert e["reason"] == "anonymous access not allowed"


def test_allow_anonymous_true_with_password_file_never_falls_back(make_broker, tmp_path):
    """allow_anonymous true and a password file: anonymous clients get in, users with the
    right password too, and a wrong password is refused (not let in as anonymous)."""
    f = write_passwd(tmp_path / "passwd", {"alice": "right"})
    b = pw_broker(make_broker, f, anonymous=True)
    for version in (4, 5):
        paho_roundtrip(b.port, version)
        paho_roundtrip(b.port, version, username="alice", password="right")
        assert paho_attempt(b.port, version, username="alice", password="x")[0] == \
            REFUSED[version]
        assert paho_attempt(b.port, version, username="mallory", password="x")[0] == \
            REFUSED[version]


# ======================================================================================
# each method alone
# ======================================================================================

def test_password_only(make_broker, tmp_path):
    """auth_methods password: a password gets in; SCRAM and anonymous clients do not, even
    with allow_anonymous true (auth_methods alone decides once it is set)."""
    f = tmp_path / "passwd"
    moat_passwd("-c", "-b", "-H", "scram-sha-256", f, "alice", "pw")
    b = pw_broker(make_broker, f, "auth_methods password\n", anonymous=True)
    paho_roundtrip(b.port, 5, username="alice", password="pw")
    assert scram_login(b.port, "alice", "pw")[0] == V5_BAD_USER_OR_PASSWORD
    for version in (4, 5):
        assert paho_attempt(b.port, version)[0] == NOT_AUTHORIZED[version]
    e = wait_event(b, "auth_failure", method="scram-sha-256")
    assert e["reason"] == "the listener's methods do not accept SCRAM"


def test_auth_methods_anonymous_is_explicit(make_broker, tmp_path):
    """auth_methods is the whole list: `auth_methods anonymous` lets anonymous clients in
    even on a listener that says allow_anonymous false."""
    b = make_broker(config="auth_methods anonymous\n", anonymous=False)
    paho_roundtrip(b.port, 5)


def test_auth_methods_typo_stops_moatd():
    """An unknown method stops moatd at start, the message naming the file and the line of
    the auth_methods directive (as every other configuration error does)."""
    rc, out = start_fails("listener %d 127.0.0.1\nauth_methods password,pasword\n"
                          % free_port())
    assert rc != 0
    assert "moat.conf:2: auth_methods: 'pasword' is not a method" in out, out


@pytest.mark.parametrize("methods", [None, "certificate"])
def test_certificate_identity(make_broker, pki, methods):
    """use_identity_as_username: the verified certificate's CN is the user name and the
    credential (allow_anonymous false, no password file); without a certificate the client
    is refused with "not authorized"; the CONNECT's user name is ignored."""
    extra = "use_identity_as_username true\n"
    if methods:
        extra += "auth_methods %s\n" % methods
    b = make_broker(config=tls_listener(pki, extra), anonymous=False)
    for version in (4, 5):
        paho_roundtrip(b.port, version, ctx=client_ctx(pki, pki.dev1))
        assert paho_attempt(b.port, version, ctx=client_ctx(pki))[0] == NOT_AUTHORIZED[version]
    c = paho_login(b.port, 5, ctx=client_ctx(pki, pki.dev2), username="device-1",
                   password="x", client_id="claims-device-1")
    c.stop()
    assert 'user="device-2"' in wait_log(b, 'connect client_id="claims-device-1"')[0]
    mosq_roundtrip(b.port, ["--cafile", pki.ca, "--cert", pki.dev1.cert, "--key",
                            pki.dev1.key])
    e = wait_event(b, "auth_success", user="device-1")
    assert e["method"] == "certificate"
    e = wait_event(b, "auth_failure")
    assert e["reason"] == "no verified client certificate for the identity"


PSK_A = "00112233445566778899aabbccddeeff"


def test_psk_identity(make_broker, tmp_path):
    """psk_file: mosquitto_pub/sub with --psk get in, the identity being the user name; a
    wrong key or an unknown identity fails the TLS handshake."""
    psk = write_file(tmp_path / "psk.txt", "dev-a:%s\n" % PSK_A)
    b = make_broker(config="psk_file %s\npsk_hint moat\nuse_identity_as_username true\n"
                    % psk, anonymous=False)
    args = ["--psk", PSK_A, "--psk-identity", "dev-a", "--tls-version", "tlsv1.3"]
    mosq_roundtrip(b.port, args)
    e = wait_event(b, "auth_success", user="dev-a")
    assert e["method"] == "psk"
    for key, ident in ((PSK_A[:-1] + "0", "dev-a"), (PSK_A, "dev-b")):
        rc, out = mosq(MOSQUITTO_PUB, b.port, "--psk", key, "--psk-identity", ident,
                       "--tls-version", "tlsv1.3", "-t", "t", "-m", "x", "-q", "1")
        assert rc != 0, out
    assert len(events(b, "auth_success")) == 2


@pytest.mark.parametrize("mech,algo", [("SCRAM-SHA-256", "scram-sha-256"),
                                       ("SCRAM-SHA-512", "scram-sha-512")])
def test_scram(make_broker, tmp_path, mech, algo):
    """MQTT 5.0 enhanced authentication: CONNECT (Authentication Method, client-first) ->
    AUTH 0x18 (server-first) -> AUTH 0x18 (client-final) -> CONNACK 0 carrying the
    server-final-message, whose ServerSignature proves the broker knows the credentials
    (checked by scram_client.verify_server_final). The session then works. A wrong password,
    an unknown user, the other mechanism's entry and a non-SCRAM entry are refused with 0x86
    after the same exchange; an unknown user's server-first-message looks like a real one."""
    f = tmp_path / "passwd"
    moat_passwd("-c", "-b", "-H", algo, f, "alice", "alice pw")
    other = "scram-sha-512" if algo == "scram-sha-256" else "scram-sha-256"
    moat_passwd("-b", "-H", other, f, "bob", "bob pw")
    moat_passwd("-b", f, "carol", "carol pw")  # argon2id: no SCRAM keys
    b = pw_broker(make_broker, f)
    rc, pr, r, st = scram_login(b.port, "alice", "alice pw", mech)
    assert rc == 0
    assert echo(r, b"hello")
    r.close()
    e = wait_event(b, "auth_success", user="alice")
    assert e["method"] == algo

    def salt_iter(state):
        a = dict(x.split("=", 1) for x in state["server_first"].decode().split(","))
        return len(a["s"]), a["i"]

    known = salt_iter(st)
    for user, pw in (("alice", "wrong"), ("nobody", "wrong"), ("bob", "bob pw"),
                     ("carol", "carol pw")):
        rc, _, r, st = scram_login(b.port, user, pw, mech)
        assert rc == V5_BAD_USER_OR_PASSWORD, user
        if user == "nobody":
            assert salt_iter(st) == known
    e = wait_event(b, "auth_failure", user="nobody")
    assert e["reason"] == "wrong user name or password (SCRAM)" and e["method"] == algo
    # Not a mechanism moat offers: "bad authentication method" at once.
    rc = scram_login(b.port, "alice", "alice pw", "SCRAM-SHA-1", expect_auth=False)[0]
    assert rc == V5_BAD_AUTH_METHOD


def test_scram_exchange_misbehaving_clients(make_broker, tmp_path):
    """The SCRAM exchange refuses what does not follow it: a malformed client-first-message
    (0x86), a PUBLISH instead of AUTH (0x82), an AUTH naming another method (0x82), channel
    binding asked for ("p=", 0x86); a client that stops answering is closed at
    connect_timeout. The broker stays well (a correct exchange works afterwards)."""
    import scram_client
    from authlib import auth_packet, raw
    from moatlib import connect5_packet, parse_connack, props, publish_packet
    f = tmp_path / "passwd"
    moat_passwd("-c", "-b", "-H", "scram-sha-256", f, "alice", "pw")
    b = pw_broker(make_broker, f, "connect_timeout 2\n")

    def start(first):
        r = raw(b.port)
        r.version = 5
        r.send(connect5_packet(uniq("bad"), props=props(auth_method="SCRAM-SHA-256",
                                                         auth_data=first)))
        return r

    def connack_code(r):
        closed, got = r.wait_closed(10)
        assert closed, got
        codes = [parse_connack(p[1], 5)[1] for p in got if p[0] == 0x20]
        return codes[0] if codes else None

    assert connack_code(start(b"garbage")) == V5_BAD_USER_OR_PASSWORD
    assert connack_code(start(b"p=tls-unique,,n=alice,r=abc")) == V5_BAD_USER_OR_PASSWORD
    first, st = scram_client.client_first("alice")
    r = start(first)
    assert r.expect(15)
    r.send(publish_packet("t", b"x", version=5))
    assert connack_code(r) == 0x82
    r = start(first)
    assert r.expect(15)
    r.send(auth_packet(0x18, props(auth_method="SCRAM-SHA-512", auth_data=b"c=biws")))
    assert connack_code(r) == 0x82
    r = start(first)
    assert r.expect(15)
    closed, got = r.wait_closed(10)
    assert closed and not [p for p in got if p[0] == 0x20], got
    wait_log(b, "connect_timeout")
    rc, _, r, _ = scram_login(b.port, "alice", "pw")
    assert rc == 0
    r.close()


def test_scram_without_password_file(make_broker):
    """A listener without a password file has no SCRAM: 0x8C, bad authentication method."""
    b = make_broker(anonymous=True)
    rc = scram_login(b.port, "alice", "x", expect_auth=False)[0]
    assert rc == V5_BAD_AUTH_METHOD


# ======================================================================================
# two factors, and chains
# ======================================================================================

def test_two_factors_certificate_and_password(make_broker, pki, tmp_path):
    """require_certificate true + auth_methods certificate+password: a certificate without a
    password is refused at CONNECT (not authorized), a password without a certificate is
    refused at the TLS handshake, a certificate with a wrong password gets 0x86 / 4, and
    both together get in (paho 3.1.1 and 5.0, mosquitto_pub/sub)."""
    f = write_passwd(tmp_path / "passwd", {"alice": "alice pw"})
    b = make_broker(config=tls_listener(pki, "require_certificate true\npassword_file %s\n"
                                        "auth_methods certificate+password\n" % f),
                    anonymous=False)
    for version in (4, 5):
        cert = client_ctx(pki, pki.dev1)
        assert connack(b.port, version, ctx=cert)[0] == NOT_AUTHORIZED[version]
        assert paho_attempt(b.port, version, ctx=client_ctx(pki, pki.dev1))[0] == \
            NOT_AUTHORIZED[version]
        assert connack(b.port, version, ctx=client_ctx(pki), username="alice",
                       password="alice pw")[0] is None
        assert paho_attempt(b.port, version, ctx=client_ctx(pki, pki.dev1), username="alice",
                            password="wrong")[0] == REFUSED[version]
        paho_roundtrip(b.port, version, ctx=client_ctx(pki, pki.dev1), username="alice",
                       password="alice pw")
    mosq_roundtrip(b.port, ["--cafile", pki.ca, "--cert", pki.dev2.cert, "--key",
                            pki.dev2.key, "-u", "alice", "-P", "alice pw"])
    e = wait_event(b, "auth_success", user="alice")
    assert e["method"] == "certificate+password"
    wait_log(b, "peer did not return a certificate")
    e = wait_event(b, "auth_failure", method="certificate")
    assert e["reason"] == "the listener's methods need more than this client proved"


def test_two_factors_certificate_and_scram(make_broker, pki, tmp_path):
    """auth_methods certificate+scram-sha-256 (a verified certificate and a SCRAM exchange):
    both together get in; SCRAM without a certificate, or a certificate with a plain
    password, do not."""
    f = tmp_path / "passwd"
    moat_passwd("-c", "-b", "-H", "scram-sha-256", f, "alice", "alice pw")
    b = make_broker(config=tls_listener(pki, "password_file %s\n"
                                        "auth_methods certificate+scram-sha-256\n" % f),
                    anonymous=False)
    assert scram_login(b.port, "alice", "alice pw", ctx=client_ctx(pki))[0] == \
        V5_BAD_USER_OR_PASSWORD
    assert connack(b.port, 5, ctx=client_ctx(pki, pki.dev1), username="alice",
                   password="alice pw")[0] == V5_BAD_USER_OR_PASSWORD
    rc, _, r, _ = scram_login(b.port, "alice", "alice pw", ctx=client_ctx(pki, pki.dev1))
    assert rc == 0, "certificate + SCRAM refused:\n" + b.output()[-1500:]
    assert alive(r)
    r.close()


def test_chained_alternatives(make_broker, pki, tmp_path):
    """auth_methods certificate,password on a TLS listener whose client certificates are
    optional: a certificate alone gets in, a password alone gets in, neither is refused
    (not authorized), and a wrong password is refused even with a good certificate."""
    f = write_passwd(tmp_path / "passwd", {"alice": "alice pw"})
    b = make_broker(config=tls_listener(pki, "password_file %s\n"
                                        "auth_methods certificate,password\n" % f),
                    anonymous=True)
    for version in (4, 5):
        paho_roundtrip(b.port, version, ctx=client_ctx(pki, pki.dev1))
        paho_roundtrip(b.port, version, ctx=client_ctx(pki), username="alice",
                       password="alice pw")
        assert paho_attempt(b.port, version, ctx=client_ctx(pki))[0] == \
            NOT_AUTHORIZED[version]
        assert paho_attempt(b.port, version, ctx=client_ctx(pki, pki.dev1), username="alice",
                            password="wrong")[0] == REFUSED[version]
    methods = {e["method"] for e in events(b, "auth_success")}
    assert methods == {"certificate", "password"}


def test_chained_scram_and_password(make_broker, tmp_path):
    """auth_methods scram-sha-512,password: SCRAM-SHA-512 and plain passwords get in,
    SCRAM-SHA-256 and anonymous clients do not."""
    f = tmp_path / "passwd"
    moat_passwd("-c", "-b", "-H", "scram-sha-512", f, "alice", "alice pw")
    moat_passwd("-b", "-H", "scram-sha-256", f, "bob", "bob pw")
    b = pw_broker(make_broker, f, "auth_methods scram-sha-512,password\n", anonymous=True)
    rc, _, r, _ = scram_login(b.port, "alice", "alice pw", "SCRAM-SHA-512")
    assert rc == 0
    r.close()
    assert scram_login(b.port, "bob", "bob pw", "SCRAM-SHA-256")[0] == \
        V5_BAD_USER_OR_PASSWORD
    paho_roundtrip(b.port, 5, username="bob", password="bob pw")
    assert paho_attempt(b.port, 5)[0] == V5_NOT_AUTHORIZED


# ======================================================================================
# auth_rehash
# ======================================================================================

def test_auth_rehash(make_broker, tmp_path):
    """auth_rehash true: after a successful login with a $7$ entry (mosquitto_passwd's), the
    entry becomes $argon2id$ in the file, the other lines stay as they were, the session goes
    on, the same password logs in again, and a later reload does not take the session away
    (its password did not change). workers 1, so the canary kicked by that reload proves the
    re-check ran over every session."""
    f = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", f, "alice", "alice pw")
    mosquitto_passwd("-b", f, "canary", "canary pw")
    canary_line = [ln for ln in f.read_text().splitlines() if ln.startswith("canary:")][0]
    b = pw_broker(make_broker, f, "auth_rehash true\nworkers 1\n")
    alice = login(b.port, 5, username="alice", password="alice pw")
    wait_for(lambda: entries(f)["alice"].startswith("$argon2id$"), 10)
    assert entries(f)["alice"].startswith("$argon2id$"), f.read_text()
    assert canary_line in f.read_text().splitlines()
    wait_log(b, "password_rehashed")
    assert echo(alice, b"still here")
    again = login(b.port, 4, username="alice", password="alice pw")
    assert connack(b.port, 4, username="alice", password="wrong")[0] == 4
    canary = login(b.port, 5, username="canary", password="canary pw")
    moat_passwd("-D", f, "canary")
    reload(b)
    closed, got = canary.wait_closed(10)
    assert closed and got and got[0][0] == 0xE0 and got[0][1][0] == 0x98, got
    kicked = [name for name, r in (("first", alice), ("second", again)) if not alive(r)]
    assert not kicked, "the re-hashed user's %s session was disconnected by the reload:\n%s" \
        % (" and ".join(kicked), b.output()[-2000:])
    revoked = [e["user"] for e in events(b, "credential_revoked")]
    assert revoked == ["canary"], revoked
    for r in (alice, again):
        r.close()


# ======================================================================================
# reload
# ======================================================================================

def test_reload_revokes_removed_and_changed_users(make_broker, tmp_path):
    """SIGHUP after editing the password file: the sessions of a removed user and of users
    whose password changed (a plain password session and a SCRAM session) are disconnected
    (5.0: DISCONNECT 0x98 Administrative action; 3.1.1: closed), with a
    "security kind=credential_revoked" line each; the sessions of unchanged users (password
    and SCRAM) stay and keep working; the new password works and the old one does not."""
    f = tmp_path / "passwd"
    write_passwd(f, {"alice": "a", "bob": "b", "carol": "c", "dave": "d"})
    moat_passwd("-b", "-H", "scram-sha-256", f, "erin", "e")
    moat_passwd("-b", "-H", "scram-sha-512", f, "frank", "f")
    b = pw_broker(make_broker, f, "workers 1\n")
    alice = paho_login(b.port, 5, username="alice", password="a", client_id="alice-c")
    bob = paho_login(b.port, 5, username="bob", password="b", client_id="bob-c")
    carol = paho_login(b.port, 5, username="carol", password="c", client_id="carol-c")
    carol3 = paho_login(b.port, 4, username="carol", password="c", client_id="carol-3")
    dave = login(b.port, 4, username="dave", password="d", client_id="dave-c")
    rc, _, erin, _ = scram_login(b.port, "erin", "e", client_id="erin-c")
    assert rc == 0
    rc, _, frank, _ = scram_login(b.port, "frank", "f", "SCRAM-SHA-512", client_id="frank-c")
    assert rc == 0
    try:
        e = entries(f)
        del e["alice"], e["dave"]
        e["bob"] = mosquitto_entry("b2")
        write_passwd(f, e)
        moat_passwd("-b", "-H", "scram-sha-512", f, "frank", "f2")
        reload(b)
        for c in (alice, bob):
            assert c.wait_disconnected(10), "%s not disconnected" % c.c._client_id
            rc = c.disconnects[0][0]
            assert getattr(rc, "value", rc) == 0x98, rc
        closed, _ = dave.wait_closed(10)
        assert closed
        closed, got = frank.wait_closed(10)
        assert closed and got and got[0][0] == 0xE0 and got[0][1][0] == 0x98, got
        rev = {e["user"]: e for e in wait_for(lambda: len(events(b, "credential_revoked")) >= 4
                                             and events(b, "credential_revoked"), 10)}
        assert set(rev) == {"alice", "bob", "dave", "frank"}, rev
        assert rev["frank"]["method"] == "scram-sha-512"
        assert rev["alice"]["reason"] == "user removed"
        assert rev["bob"]["reason"] == "password changed"
        assert rev["alice"]["client_id"] == "alice-c"
        topic = uniq("stay")
        carol.subscribe(topic, 1)
        roundtrip(carol, carol3, topic)
        assert alive(erin)
        assert paho_attempt(b.port, 5, username="bob", password="b")[0] == 0x86
        paho_login(b.port, 5, username="bob", password="b2").stop()
        assert paho_attempt(b.port, 4, username="alice", password="a")[0] == 4
    finally:
        for c in (alice, bob, carol, carol3):
            c.stop()
        erin.close()
        dave.close()
        frank.close()


def test_reload_disconnect_reason_is_0x98(make_broker, tmp_path):
    """The exact packet a 5.0 client gets when its password changes: DISCONNECT with reason
    0x98 (Administrative action), then the broker closes."""
    f = write_passwd(tmp_path / "passwd", {"alice": "a"})
    b = pw_broker(make_broker, f)
    r = login(b.port, 5, username="alice", password="a")
    write_passwd(f, {"alice": "new"})
    reload(b)
    closed, got = r.wait_closed(10)
    assert closed and len(got) == 1, got
    assert got[0][0] == 0xE0 and parse_reason(got[0][0], got[0][1], 5)[1] == 0x98
    wait_event(b, "credential_revoked", user="alice", reason="password changed")


def test_failed_password_reload_keeps_sessions_and_old_file(make_broker, tmp_path):
    """A password file broken on reload is refused with its line (auth_reload_failed): the old
    credentials stay in force and no session is dropped."""
    f = write_passwd(tmp_path / "passwd", {"alice": "a"})
    b = pw_broker(make_broker, f)
    r = login(b.port, 5, username="alice", password="a")
    write_file(f, "alice:%s\nthis line is broken\n" % mosquitto_entry("new"))
    reload(b)
    line = wait_log(b, "auth_reload_failed")[0]
    assert "%s:2:" % f in line, line
    assert alive(r)
    login(b.port, 4, username="alice", password="a").close()
    assert connack(b.port, 4, username="alice", password="new")[0] == 4
    r.close()


# ======================================================================================
# a storm of wrong passwords
# ======================================================================================

STORM = 200


def test_wrong_password_storm_does_not_stall_delivery(make_broker, tmp_path):
    """200 concurrent CONNECTs with wrong passwords against Argon2id entries (about 10 s of
    hashing on two auth threads): while they are pending, an already connected pair of
    clients keeps exchanging messages (each round trip bounded by 5 s), and every storm
    connection is refused with 0x86 in the end."""
    f = tmp_path / "passwd"
    moat_passwd("-c", "-b", f, "alice", "alice pw")
    moat_passwd("-b", f, "bob", "bob pw")
    b = pw_broker(make_broker, f, "auth_threads 2\nconnect_timeout 120\n")
    a = login(b.port, 5, username="alice", password="alice pw", client_id="pair-a")
    z = login(b.port, 5, username="bob", password="bob pw", client_id="pair-b")
    topic = uniq("pair")
    assert z.subscribe([(topic, 1)]) == [1]

    socks = []
    for i in range(STORM):
        s = socket.create_connection(("127.0.0.1", b.port), timeout=10)
        socks.append(s)
    codes, done = {}, threading.Event()

    def storm():
        sel = selectors.DefaultSelector()
        bufs = {}
        for i, s in enumerate(socks):
            user = "alice" if i % 2 else "nobody%d" % i
            s.sendall(connect_packet("storm-%d" % i, 5 if i % 3 else 4, username=user,
                                     password="wrong %d" % i))
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
            bufs[i] = b""
        deadline = time.time() + 90
        while len(codes) < len(socks) and time.time() < deadline:
            for key, _ in sel.select(0.5):
                i = key.data
                try:
                    chunk = key.fileobj.recv(64)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""
                bufs[i] += chunk
                if len(bufs[i]) >= 4 or not chunk:
                    codes[i] = bufs[i][3] if len(bufs[i]) >= 4 and bufs[i][0] == 0x20 else None
                    sel.unregister(key.fileobj)
        sel.close()
        done.set()

    t = threading.Thread(target=storm, daemon=True)
    t.start()
    rounds = 0
    try:
        while not done.is_set():
            payload = b"round %d" % rounds
            assert a.publish(topic, payload, qos=1) in (0, 0x10)
            got = z.publishes(1, timeout=5)
            assert got and got[0].payload == payload, \
                "delivery stalled during the storm after %d round trips" % rounds
            rounds += 1
            pending = STORM - len(codes)
            if pending < STORM // 4:
                break
        # Most of the storm was still waiting for its answer while the pair talked.
        assert rounds >= 5, "only %d round trips while the storm was pending" % rounds
        t.join(100)
        assert not t.is_alive()
        assert len(codes) == STORM
        refused = [c for c in codes.values()]
        by_code = {c: refused.count(c) for c in set(refused)}
        assert set(by_code) <= {V5_BAD_USER_OR_PASSWORD, V3_BAD_USER_OR_PASSWORD}, by_code
    finally:
        for s in socks:
            s.close()
        a.close()
        z.close()


def test_two_factors_tied_to_one_identity(make_broker, pki, tmp_path):
    """With use_identity_as_username, certificate+password checks the password of the
    certificate's own name: another user's password does not pass with this certificate."""
    f = write_passwd(tmp_path / "passwd", {"device-1": "d1 pw", "device-2": "d2 pw"})
    b = make_broker(config=tls_listener(pki, "require_certificate true\n"
                                        "use_identity_as_username true\npassword_file %s\n"
                                        "auth_methods certificate+password\n" % f),
                    anonymous=False)
    for version in (4, 5):
        # device-1's certificate with device-1's password: in, as device-1
        assert connack(b.port, version, ctx=client_ctx(pki, pki.dev1), username="x",
                       password="d1 pw")[0] == 0
        # ... with device-2's password, or none: refused
        assert connack(b.port, version, ctx=client_ctx(pki, pki.dev1), username="device-2",
                       password="d2 pw")[0] == REFUSED[version]
        assert connack(b.port, version, ctx=client_ctx(pki, pki.dev1))[0] == \
            NOT_AUTHORIZED[version]
    e = wait_event(b, "auth_success", user="device-1")
    assert e["method"] == "certificate+password"
