"""TLS listeners against real clients (issue 4): paho-mqtt 3.1.1 and 5.0, mosquitto_pub and
mosquitto_sub, openssl s_client, and Python's ssl module for what the clients do not show.

The PKI is made by tls_pki.py with the openssl command (session fixture ``pki``). Every
broker listens on 127.0.0.1 only; every client and openssl process is bounded by a timeout.

What is proved:
- server authentication and mutual TLS with paho (3.1.1, 5.0) and mosquitto_pub/sub;
  the certificate's CN, subject or first SAN as the user name (log line ``connect ... user=``),
  which also authenticates the client (allow_anonymous false);
- TLS 1.0/1.1, weak and non-ECDHE/non-AEAD ciphers refused by the server (the client is
  made willing with @SECLEVEL=0, so the refusal is the broker's: its log says why);
  TLS 1.2 and 1.3 accepted; no renegotiation; ``tls_version tlsv1.3``; ciphers, TLS 1.3
  suites and curves as configured;
- require_certificate: no certificate, another CA's, an expired one: refused at the
  handshake while the other clients keep working;
- CRL: a revoked certificate is refused at the handshake; revoking a certificate, emitting
  the CRL and sending SIGHUP drops the live sessions that used it (DISCONNECT 0x98 for 5.0)
  and no other; a TLS session saved before the revocation cannot be resumed after it;
- certificate reload on SIGHUP keeps live connections and serves the new certificate; a
  broken or mismatched new certificate leaves the old one in place;
- TLS-PSK over TLS 1.2 and 1.3, the PSK identity as user name, wrong keys refused, an empty
  psk_file refused at start;
- plaintext, HTTP and garbage on the TLS port, slowloris handshakes, 50 concurrent
  handshakes;
- session resumption (tickets) on and off; TLS 1.3 KeyUpdate after tls_key_update_bytes
  and tls_key_update_seconds, observed in the client's TLS message trace;
- a TLS and a plain listener in one broker.
"""
import os
import random
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

from moatlib import (MOATD, PINGREQ, Broker, Client, Publish, Raw, connect5_packet,  # noqa: F401
                     connect_packet, disconnect_packet, free_port, make_broker, parse_connack,
                     parse_reason, publish_packet, wait_for, watchdog)
from tls_pki import OPENSSL, pki  # noqa: F401  (pki is a fixture)

MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "mosquitto_pub"
MOSQUITTO_SUB = shutil.which("mosquitto_sub") or "mosquitto_sub"

# An OpenSSL config that caps a client (mosquitto_pub) at TLS 1.2: mosquitto's
# --tls-version tlsv1.2 is a minimum, so without this it would negotiate TLS 1.3.
MAX_TLS12_CNF = """\
openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MaxProtocol = TLSv1.2
"""


def uniq(name="t"):
    return "%s-%s" % (name, uuid.uuid4().hex[:8])


# ---- broker configs ----

def server_conf(pki, cafile=True, extra=""):
    """The TLS directives of a listener with the test server certificate."""
    text = "certfile %s\nkeyfile %s\n" % (pki.server.cert, pki.server.key)
    if cafile:
        text += "cafile %s\n" % pki.ca
    return text + extra


def mtls_conf(pki, extra=""):
    """Mutual TLS with the CN as user name: certificates are the credentials."""
    return server_conf(pki, extra="require_certificate true\nuse_identity_as_username true\n"
                       + extra)


def stop_checked(b):
    rc = b.stop()
    b.check_clean()
    assert rc == 0, "moatd exited with %r:\n%s" % (rc, b.output()[-4000:])


@pytest.fixture(scope="module")
def shared(pki):
    """One TLS broker for the tests that change nothing in it: server certificate, client
    certificates optional (cafile), tickets on, connect_timeout 3 (slowloris)."""
    b = Broker(config=server_conf(pki, extra="connect_timeout 3\n"), anonymous=True)
    yield b
    stop_checked(b)


# ---- Python TLS clients ----

def client_ctx(pki, cert=None, version=None, ca=None, msg_cb=None, ciphers=None):
    """A client context trusting the test CA (or ca); cert: a Cert sent with its chain;
    version: 12 caps at TLS 1.2, 13 requires TLS 1.3; msg_cb: OpenSSL's message callback."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca or pki.ca)
    if cert is not None:
        ctx.load_cert_chain(cert.chain, cert.key)
    if version == 12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif version == 13:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if ciphers:
        ctx.set_ciphers(ciphers)
    if msg_cb is not None:
        ctx._msg_callback = msg_cb  # CPython's debugging hook over SSL_CTX_set_msg_callback
    return ctx


class _TlsSock:
    """An SSLSocket whose TLS errors (alerts) read as a reset peer, as Raw expects."""

    def __init__(self, s):
        self.s = s
        self.alert = None

    def recv(self, n):
        try:
            return self.s.recv(n)
        except ssl.SSLError as e:
            self.alert = str(e)
            raise ConnectionResetError(str(e))

    def sendall(self, data):
        try:
            return self.s.sendall(data)
        except ssl.SSLError as e:
            self.alert = str(e)
            raise BrokenPipeError(str(e))

    def settimeout(self, t):
        self.s.settimeout(t)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def __getattr__(self, name):
        return getattr(self.s, name)


class TlsRaw(Raw):
    """A raw MQTT connection over TLS (moatlib's Raw helpers all work on it)."""

    def __init__(self, port, ctx, timeout=5, session=None):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            tls = ctx.wrap_socket(sock, server_hostname="localhost", session=session)
        except (ssl.SSLError, OSError):
            sock.close()
            raise
        self.tls = tls
        self.s = _TlsSock(tls)
        self.buf = b""
        self.skipped = []


def tls_session(port, ctx, version=4, client_id=None, session=None, **kw):
    """As moatlib.raw_session, over TLS (session: an ssl.SSLSession to resume)."""
    r = TlsRaw(port, ctx, session=session)
    r.version = version
    pkt = (connect5_packet(client_id or uniq(), **kw) if version == 5
           else connect_packet(client_id or uniq(), version, **kw))
    r.send(pkt)
    p = r.recv_packet()
    assert p is not None and p[0] == 0x20, "no CONNACK: %r (%s)" % (p, r.s.alert)
    r.session_present, rc, r.connack_props = parse_connack(p[1], version)
    assert rc == 0, "CONNACK refused: %r" % (p,)
    return r


def attempt(port, ctx, version=4, client_id=None, username=None):
    """One connection attempt. Returns ("connack", code) when the broker answers the
    CONNECT, else ("refused", why): the handshake failed, or the connection was closed (in
    TLS 1.3 the client learns of a refused certificate only after its own Finished)."""
    try:
        r = TlsRaw(port, ctx)
    except (ssl.SSLError, OSError) as e:
        return "refused", "handshake: %s" % e
    try:
        pkt = (connect5_packet(client_id or uniq(), username=username) if version == 5
               else connect_packet(client_id or uniq(), version, username=username))
        try:
            r.send(pkt)
        except OSError as e:
            return "refused", "send: %s" % e
        p = r.recv_packet(5)
        if p is None:
            return "refused", r.s.alert or "closed"
        assert p[0] == 0x20, "not a CONNACK: %r" % (p,)
        return "connack", parse_connack(p[1], version)[1]
    finally:
        r.close()


def roundtrip(r, topic=None):
    """A QoS 1 publish to itself on a connected Raw: True if it comes back."""
    topic = topic or uniq("rt")
    v = r.version
    r.subscribe([(topic, 1)])
    r.send(publish_packet(topic, b"rt", 1, 7, version=v))
    got = acked = False
    deadline = time.time() + 5
    while not (got and acked) and time.time() < deadline:
        p = r.recv_packet(max(0.05, deadline - time.time()))
        if p is None:
            return False
        if p[0] >> 4 == 4:
            acked = True
        elif p[0] >> 4 == 3:
            m = Publish(p[0], p[1], v)
            r.send(bytes([0x40, 2]) + m.pid.to_bytes(2, "big"))
            got = m.payload == b"rt"
    return got and acked


# ---- paho over TLS ----

def paho(port, ctx, client_id=None, version=5):
    """A moatlib Client (paho) over TLS; it never reconnects by itself. ctx: an SSLContext
    (tls_set_context), or a dict of paho tls_set() arguments, as applications call it."""
    c = Client(port, client_id=client_id or uniq("paho"), version=version)
    if isinstance(ctx, dict):
        kw = dict(ctx)
        kw.setdefault("cert_reqs", ssl.CERT_REQUIRED)
        kw.setdefault("tls_version", ssl.PROTOCOL_TLS_CLIENT)
        c.c.tls_set(**kw)
    else:
        c.c.tls_set_context(ctx)
    c.c.reconnect_delay_set(60, 120)
    return c


def disconnect_code(rc):
    return getattr(rc, "value", rc)


# ---- log ----

def log_user(b, client_id, timeout=5):
    """The user= of the broker's `connect client_id="ID"` line: a str, None for `-`, or
    raises if there is no such line."""
    pat = re.compile(r'connect client_id="%s" .*? user=("(?:[^"\\]|\\.)*"|-) '
                     % re.escape(client_id))
    m = wait_for(lambda: pat.search(b.output()), timeout)
    assert m, "no connect line for %s:\n%s" % (client_id, b.output()[-3000:])
    u = m.group(1)
    return None if u == "-" else u[1:-1].replace('\\"', '"').replace("\\\\", "\\")


def log_line(b, needle, timeout=5):
    """The first log line containing needle (waits for it)."""
    def find():
        for line in b.output().splitlines():
            if needle in line:
                return line
        return None
    line = wait_for(find, timeout)
    assert line, "no log line with %r:\n%s" % (needle, b.output()[-3000:])
    return line


def addr_line(b, sock_or_port, what="transport_failed", timeout=5):
    """The `what` log line about the client socket (addr=127.0.0.1:PORT)."""
    port = sock_or_port if isinstance(sock_or_port, int) else sock_or_port.getsockname()[1]
    pat = re.compile(r"^.* %s addr=127\.0\.0\.1:%d\b.*$" % (re.escape(what), port), re.M)
    m = wait_for(lambda: pat.search(b.output()), timeout)
    assert m, "no %s line for port %d:\n%s" % (what, port, b.output()[-3000:])
    return m.group(0)


def sighup_and_wait(b, needle, timeout=10):
    """Sends SIGHUP and waits for one more log line containing needle."""
    n = b.output().count(needle)
    b.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: b.output().count(needle) > n, timeout), \
        "no new %r after SIGHUP:\n%s" % (needle, b.output()[-3000:])


# ---- openssl s_client ----

def s_client(port, *args, script=(), timeout=20, env=None):
    """Runs openssl s_client against 127.0.0.1:port. script: (delay, bytes) steps written
    to its stdin, which is closed after the last one (s_client then ends). Returns
    (returncode, output with stderr)."""
    cmd = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost"]
    with tempfile.TemporaryFile() as log:
        p = subprocess.Popen(cmd + list(args), stdin=subprocess.PIPE, stdout=log,
                             stderr=subprocess.STDOUT, env=env)
        try:
            for delay, data in script:
                time.sleep(delay)
                p.stdin.write(data)
                p.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        finally:
            try:
                p.stdin.close()
            except OSError:
                pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            log.seek(0)
            raise AssertionError("s_client did not finish:\n" +
                                 log.read().decode("utf-8", "replace"))
        log.seek(0)
        return p.returncode, log.read().decode("utf-8", "replace")


def handshake_ok(out):
    """Whether s_client's output shows a completed handshake with the verified server."""
    return "Verify return code: 0 (ok)" in out and re.search(r"^(New|Reused), TLSv1\.[23]",
                                                             out, re.M) is not None


def served_serial(port, pki):
    """The serial of the certificate the broker presents now (via s_client)."""
    rc, out = s_client(port, "-CAfile", pki.ca)
    assert handshake_ok(out), out
    p = subprocess.run([OPENSSL, "x509", "-noout", "-serial"], input=out.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    return p.stdout.decode().strip().split("=", 1)[1]


# ---- mosquitto clients ----

def mosq(tool, port, *args, timeout=15, env=None):
    cmd = [tool, "-h", "127.0.0.1", "-p", str(port)] + list(args)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                       env=env)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def max_tls12_env(tmp_path):
    path = os.path.join(str(tmp_path), "max-tls12.cnf")
    with open(path, "w") as f:
        f.write(MAX_TLS12_CNF)
    env = dict(os.environ)
    env["OPENSSL_CONF"] = path
    return env


# ======================================================================================
# clients: paho and mosquitto, server authentication and mutual TLS
# ======================================================================================

@pytest.mark.parametrize("version", [4, 5])
def test_paho_server_auth(shared, pki, version):
    """paho over TLS verifying the broker's certificate (CN=localhost, SAN IP:127.0.0.1);
    a message goes from one TLS client to another."""
    topic = uniq("paho")
    sub = paho(shared.port, {"ca_certs": pki.ca}, version=version)
    pub = paho(shared.port, {"ca_certs": pki.ca}, version=version)
    try:
        sub.connect()
        assert sub.subscribe(topic, 1) == [1]
        pub.connect()
        pub.publish(topic, b"over tls", 1)
        m = sub.get(5)
        assert m is not None and m.payload == b"over tls"
    finally:
        sub.stop()
        pub.stop()
    line = log_line(shared, 'connect client_id="%s"' % pub.c._client_id.decode())
    assert "tls=TLSv1.3 cipher=TLS_" in line, line


def test_server_chain_from_intermediate(make_broker, pki):
    """A server certificate from an intermediate CA: certfile holds the chain (leaf, then
    the intermediate), and clients that trust only the root verify it."""
    srv = pki.inter.issue(uniq("tls-server-inter"), "/CN=localhost",
                          san="DNS:localhost, IP:127.0.0.1", eku="serverAuth")
    b = make_broker(config="certfile %s\nkeyfile %s\n" % (srv.chain, srv.key))
    rc, out = s_client(b.port, "-CAfile", pki.ca)
    assert handshake_ok(out), out
    r = tls_session(b.port, client_ctx(pki), 5)
    assert roundtrip(r)
    r.close()


def test_paho_refuses_wrong_server(shared, pki):
    """A client trusting another CA refuses the broker: server authentication works."""
    kind, why = attempt(shared.port, client_ctx(pki, ca=pki.other.cert))
    assert kind == "refused" and "CERTIFICATE_VERIFY_FAILED" in why, why


@pytest.mark.parametrize("version", [4, 5])
def test_paho_mutual_tls(make_broker, pki, version):
    """Mutual TLS with allow_anonymous false: the verified certificate is the credential,
    its CN the user name; two devices exchange a message."""
    b = make_broker(config=mtls_conf(pki), anonymous=False)
    topic = uniq("mtls")
    a = paho(b.port, {"ca_certs": pki.ca, "certfile": pki.dev1.cert, "keyfile": pki.dev1.key},
             client_id=uniq("dev1"), version=version)
    c = paho(b.port, {"ca_certs": pki.ca, "certfile": pki.dev2.cert, "keyfile": pki.dev2.key},
             client_id=uniq("dev2"), version=version)
    try:
        a.connect()
        assert a.subscribe(topic, 1) == [1]
        c.connect()
        c.publish(topic, b"from device-2", 1)
        m = a.get(5)
        assert m is not None and m.payload == b"from device-2"
        assert log_user(b, a.c._client_id.decode()) == "device-1"
        assert log_user(b, c.c._client_id.decode()) == "device-2"
    finally:
        a.stop()
        c.stop()


def test_mosquitto_clients_server_auth(shared, pki):
    """mosquitto_pub and mosquitto_sub with --cafile: a retained message goes through."""
    topic = uniq("mosq")
    rc, out = mosq(MOSQUITTO_PUB, shared.port, "--cafile", pki.ca, "-t", topic, "-m", "hello",
                   "-r", "-q", "1")
    assert rc == 0, out
    rc, out = mosq(MOSQUITTO_SUB, shared.port, "--cafile", pki.ca, "-t", topic, "-C", "1",
                   "-W", "10")
    assert rc == 0 and out.strip() == "hello", out
    # the retained message is cleared so nothing leaks into later tests
    mosq(MOSQUITTO_PUB, shared.port, "--cafile", pki.ca, "-t", topic, "-n", "-r")


def test_mosquitto_clients_mutual_tls(make_broker, pki):
    """mosquitto_pub/sub with --cert/--key on a require_certificate listener; without a
    certificate they are refused."""
    b = make_broker(config=mtls_conf(pki), anonymous=False)
    topic = uniq("mosq-mtls")
    d1 = ["--cafile", pki.ca, "--cert", pki.dev1.cert, "--key", pki.dev1.key]
    d2 = ["--cafile", pki.ca, "--cert", pki.dev2.cert, "--key", pki.dev2.key]
    rc, out = mosq(MOSQUITTO_PUB, b.port, *d1, "-i", "mosq-pub-1", "-t", topic, "-m", "m1",
                   "-r", "-q", "1")
    assert rc == 0, out
    rc, out = mosq(MOSQUITTO_SUB, b.port, *d2, "-i", "mosq-sub-2", "-t", topic, "-C", "1",
                   "-W", "10")
    assert rc == 0 and out.strip() == "m1", out
    assert log_user(b, "mosq-pub-1") == "device-1"
    assert log_user(b, "mosq-sub-2") == "device-2"
    rc, out = mosq(MOSQUITTO_PUB, b.port, "--cafile", pki.ca, "-i", "mosq-nocert", "-t", topic,
                   "-m", "x")
    assert rc != 0, out
    assert 'connect client_id="mosq-nocert"' not in b.output()
    mosq(MOSQUITTO_PUB, b.port, *d1, "-t", topic, "-n", "-r")


# ======================================================================================
# identity as user name
# ======================================================================================

@pytest.mark.parametrize("directive,cert,expected", [
    ("use_identity_as_username", "dev1", "device-1"),
    ("use_subject_as_username", "dev1", "CN=device-1,O=moat test"),
    ("use_san_as_username", "dev1", "device-1@example.com"),
    ("use_identity_as_username", "dev3", "device-3"),
    ("use_identity_as_username true\nuse_san_as_username", "dev1", "device-1@example.com"),
    ("use_san_as_username true\nuse_subject_as_username", "dev1", "CN=device-1,O=moat test"),
])
def test_identity_as_username(make_broker, pki, directive, cert, expected):
    """The CN, the RFC 2253 subject or the first SAN becomes the user name, overriding the
    user name the CONNECT carries; 3.1.1 and 5.0 alike. device-3 comes through an
    intermediate CA (the client sends the chain, the broker trusts only the root). With
    several set, the subject wins over the SAN, the SAN over the CN."""
    b = make_broker(config=server_conf(pki, extra="require_certificate true\n%s true\n"
                                       % directive), anonymous=False)
    c = getattr(pki, cert)
    for version in (4, 5):
        cid = uniq("id%d" % version)
        r = tls_session(b.port, client_ctx(pki, cert=c), version, cid, username="admin")
        assert roundtrip(r)
        r.close()
        assert log_user(b, cid) == expected


def test_identity_refusals(make_broker, pki):
    """With use_san_as_username a certificate without SAN is refused (not authorized), and
    with use_identity_as_username a client without a certificate (optional on this
    listener) is refused even though it names a user: identity comes from the certificate
    only. The same client is welcome on an allow_anonymous listener without identity."""
    b = make_broker(config=server_conf(pki, extra="use_san_as_username true\n"),
                    anonymous=False)
    assert attempt(b.port, client_ctx(pki, cert=pki.dev2), 4) == ("connack", 5)
    assert attempt(b.port, client_ctx(pki, cert=pki.dev2), 5) == ("connack", 0x87)
    log_line(b, "the client certificate has no such name")
    assert attempt(b.port, client_ctx(pki), 5, username="device-1") == ("connack", 0x87)
    log_line(b, "no verified client certificate for the identity")
    assert attempt(b.port, client_ctx(pki, cert=pki.dev1), 5)[1] == 0


def test_certificate_alone_does_not_authenticate(make_broker, pki):
    """require_certificate without any use_*_as_username: the certificate is checked at
    the handshake, but it does not authenticate; with allow_anonymous false the client is
    refused at CONNECT (a user name in the CONNECT does not help either)."""
    b = make_broker(config=server_conf(pki, extra="require_certificate true\n"),
                    anonymous=False)
    assert attempt(b.port, client_ctx(pki, cert=pki.dev1), 5) == ("connack", 0x87)
    assert attempt(b.port, client_ctx(pki, cert=pki.dev1), 4, username="device-1") == \
        ("connack", 5)
    log_line(b, "anonymous access not allowed")


def test_capath(make_broker, pki, tmp_path):
    """capath (a hashed directory, `openssl rehash`) instead of cafile."""
    d = tmp_path / "capath"
    d.mkdir()
    shutil.copy(pki.ca, str(d / "root.pem"))
    subprocess.run([OPENSSL, "rehash", str(d)], check=True, timeout=10)
    b = make_broker(config="certfile %s\nkeyfile %s\ncapath %s\nrequire_certificate true\n"
                    "use_identity_as_username true\n" % (pki.server.cert, pki.server.key, d),
                    anonymous=False)
    cid = uniq("capath")
    r = tls_session(b.port, client_ctx(pki, cert=pki.dev2), 5, cid)
    assert roundtrip(r)
    r.close()
    assert log_user(b, cid) == "device-2"
    assert attempt(b.port, client_ctx(pki, cert=pki.stranger), 5)[0] == "refused"


# ======================================================================================
# protocol versions, ciphers, renegotiation (openssl s_client)
# ======================================================================================

@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_old_tls_refused(shared, pki, flag):
    """TLS 1.0 and 1.1 are refused by the broker (the client is made willing to use them
    with @SECLEVEL=0, so the refusal is the server's, and its log says so)."""
    n = shared.output().count("unsupported protocol")
    rc, out = s_client(shared.port, flag, "-cipher", "DEFAULT:@SECLEVEL=0", "-CAfile", pki.ca)
    assert rc != 0 and not handshake_ok(out), out
    assert "no protocols available" not in out, "the client refused by itself:\n" + out
    assert wait_for(lambda: shared.output().count("unsupported protocol") > n, 5), \
        shared.output()[-2000:]


@pytest.mark.parametrize("flag,version", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_modern_tls_accepted(shared, pki, flag, version):
    rc, out = s_client(shared.port, flag, "-CAfile", pki.ca)
    assert handshake_ok(out), out
    assert re.search(r"^New, %s, Cipher is" % re.escape(version), out, re.M), out
    if version == "TLSv1.2":
        assert "Compression: NONE" in out, out
        assert re.search(r"Cipher is ECDHE-ECDSA-[A-Z0-9-]*(GCM|POLY1305)", out), out


@pytest.mark.parametrize("cipher", [
    "AES128-SHA",                     # RSA key exchange, CBC
    "AES256-GCM-SHA384",              # AEAD, but no ECDHE (no forward secrecy)
    "DES-CBC3-SHA",                   # 3DES
    "RC4-SHA",                        # RC4 (OpenSSL 3 may not even offer it)
    "ECDHE-ECDSA-AES128-SHA",         # ECDHE, but CBC with SHA-1
    "ECDHE-ECDSA-AES256-SHA384",      # ECDHE, but CBC
    "DHE-RSA-AES128-GCM-SHA256",      # finite-field DHE
    "ECDHE-ECDSA-NULL-SHA",           # no encryption
])
def test_weak_ciphers_refused(shared, pki, cipher):
    """TLS 1.2 with only a weak or non-ECDHE-AEAD cipher offered: the broker finds no
    shared cipher."""
    n = shared.output().count("no shared cipher")
    rc, out = s_client(shared.port, "-tls1_2", "-cipher", cipher + ":@SECLEVEL=0",
                       "-CAfile", pki.ca)
    if "no cipher match" in out:
        pytest.skip("this OpenSSL cannot offer %s at all" % cipher)
    assert rc != 0 and not handshake_ok(out), out
    assert wait_for(lambda: shared.output().count("no shared cipher") > n, 5), \
        shared.output()[-2000:]


@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-GCM-SHA256",
                                    "ECDHE-ECDSA-AES256-GCM-SHA384",
                                    "ECDHE-ECDSA-CHACHA20-POLY1305"])
def test_default_ciphers_accepted(shared, pki, cipher):
    rc, out = s_client(shared.port, "-tls1_2", "-cipher", cipher, "-CAfile", pki.ca)
    assert handshake_ok(out) and "Cipher is %s" % cipher in out, out


@pytest.mark.parametrize("flag,groups,temp_key", [
    ("-tls1_3", "X25519", "X25519"), ("-tls1_3", "P-256", "prime256v1"),
    ("-tls1_3", "P-384", "secp384r1"), ("-tls1_3", "P-521", None),
    ("-tls1_3", "ffdhe2048", None),
    # TLS 1.2: the client's groups also bound the ECDSA certificate's curve (P-256)
    ("-tls1_2", "X25519:P-256", "X25519"), ("-tls1_2", "P-521:P-256", "prime256v1"),
])
def test_default_groups(shared, pki, flag, groups, temp_key):
    """Key exchange groups: X25519, P-256 and P-384 only (the first of the client's list
    that the broker supports; P-521 and finite-field groups never)."""
    rc, out = s_client(shared.port, flag, "-groups", groups, "-CAfile", pki.ca)
    if temp_key is None:
        assert not handshake_ok(out), out
    else:
        assert handshake_ok(out), out
        assert re.search(r"Server Temp Key: (ECDH, )?%s" % temp_key, out), out


def test_no_renegotiation(shared, pki):
    """A TLS 1.2 client asking to renegotiate (s_client's R command) gets the
    no_renegotiation alert and no second handshake; the broker keeps serving."""
    rc, out = s_client(shared.port, "-tls1_2", "-CAfile", pki.ca, "-msg",
                       script=[(1.0, b"R\n"), (2.0, b"")])
    assert "RENEGOTIATING" in out, out
    assert len(re.findall(r", ServerHello$", out, re.M)) == 1, out
    assert "no_renegotiation" in out or "no renegotiation" in out, out
    rc, out = s_client(shared.port, "-tls1_2", "-CAfile", pki.ca)
    assert handshake_ok(out), out


def test_client_key_update(shared, pki):
    """A TLS 1.3 client's KeyUpdate asking for an update back (s_client's K command) is
    answered with the broker's own KeyUpdate, and MQTT goes on over the new keys."""
    script = [(0.5, connect_packet(uniq("ku"), 4)), (0.5, b"K\n"), (0.5, PINGREQ), (1.0, b"")]
    rc, out = s_client(shared.port, "-tls1_3", "-CAfile", pki.ca, "-msg", script=script)
    assert "KEYUPDATE" in out, out
    assert len(re.findall(r"^>>> TLS 1\.3, Handshake \[length [0-9a-f]+\], KeyUpdate$", out,
                          re.M)) == 1, out
    assert len(re.findall(r"^<<< TLS 1\.3, Handshake \[length [0-9a-f]+\], KeyUpdate$", out,
                          re.M)) >= 1, out


def test_tls13_only(make_broker, pki, tmp_path):
    """tls_version tlsv1.3: TLS 1.2 is refused (s_client and mosquitto_pub capped at
    1.2), TLS 1.3 works."""
    b = make_broker(config=server_conf(pki, extra="tls_version tlsv1.3\n"))
    rc, out = s_client(b.port, "-tls1_2", "-CAfile", pki.ca)
    assert rc != 0 and not handshake_ok(out), out
    log_line(b, "unsupported protocol")
    rc, out = s_client(b.port, "-tls1_3", "-CAfile", pki.ca)
    assert handshake_ok(out), out
    rc, out = mosq(MOSQUITTO_PUB, b.port, "--cafile", pki.ca, "-t", "t", "-m", "x",
                   env=max_tls12_env(tmp_path))
    assert rc != 0, out
    rc, out = mosq(MOSQUITTO_PUB, b.port, "--cafile", pki.ca, "-i", "m13", "-t", "t", "-m", "x")
    assert rc == 0, out
    assert "tls=TLSv1.3" in log_line(b, 'connect client_id="m13"')


def test_configured_ciphers_and_curves(make_broker, pki):
    """ciphers, ciphers_tls1.3 and tls_curves replace the defaults."""
    b = make_broker(config=server_conf(pki, extra="ciphers ECDHE-ECDSA-CHACHA20-POLY1305\n"
                                       "ciphers_tls1.3 TLS_CHACHA20_POLY1305_SHA256\n"
                                       "tls_curves P-384\n"))
    rc, out = s_client(b.port, "-tls1_2", "-CAfile", pki.ca)
    assert handshake_ok(out) and "Cipher is ECDHE-ECDSA-CHACHA20-POLY1305" in out, out
    assert re.search(r"Server Temp Key: ECDH, (secp384r1|P-384)", out), out
    rc, out = s_client(b.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256",
                       "-CAfile", pki.ca)
    assert not handshake_ok(out), out
    rc, out = s_client(b.port, "-tls1_3", "-CAfile", pki.ca)
    assert handshake_ok(out) and "Cipher is TLS_CHACHA20_POLY1305_SHA256" in out, out
    rc, out = s_client(b.port, "-tls1_3", "-groups", "X25519", "-CAfile", pki.ca)
    assert not handshake_ok(out), out


# ======================================================================================
# require_certificate
# ======================================================================================

@pytest.mark.parametrize("version", [12, 13])
def test_require_certificate(make_broker, pki, version):
    """Without a certificate, with another CA's, an expired or not yet valid one, or one
    made for servers only (extendedKeyUsage serverAuth), the client is refused at the
    handshake (no CONNACK, the reason logged); a device connected before
    keeps working, and good devices still get in."""
    b = make_broker(config=mtls_conf(pki), anonymous=False)
    keeper = tls_session(b.port, client_ctx(pki, cert=pki.dev1), 5, uniq("keeper"))
    future = pki.fresh_client(uniq("tls-future"), startdate="20990101000000Z",
                              enddate="20991231000000Z")
    cases = [(None, "peer did not return a certificate"),
             (pki.stranger, "unable to get local issuer certificate"),
             (pki.expired, "certificate has expired"),
             (future, "certificate is not yet valid"),
             (pki.server, "unsuitable certificate purpose")]  # serverAuth only
    for cert, reason in cases:
        ctx = client_ctx(pki, cert=cert, version=version)
        sock_ports_before = b.output().count("transport_failed")
        kind, why = attempt(b.port, ctx, 5)
        assert kind == "refused", (cert, why)
        assert wait_for(lambda: b.output().count("transport_failed") > sock_ports_before, 5)
        assert reason in b.output(), "%s:\n%s" % (reason, b.output()[-2000:])
        assert keeper.ping(), "the connected device lost its session"
    assert roundtrip(keeper)
    for cert in (pki.dev2, pki.dev3):
        assert attempt(b.port, client_ctx(pki, cert=cert, version=version), 4) == ("connack", 0)
    keeper.close()


# ======================================================================================
# CRL
# ======================================================================================

def crl_broker(make_broker, pki, tmp_path, extra=""):
    crl = str(tmp_path / "crl.pem")
    pki.crl_bundle(crl)
    b = make_broker(config=mtls_conf(pki, extra="crlfile %s\n%s" % (crl, extra)),
                    anonymous=False)
    return b, crl


def test_crl_refuses_revoked_at_handshake(make_broker, pki, tmp_path):
    """A certificate listed in crlfile is refused at the handshake, over TLS 1.2 and 1.3;
    certificates of the same CA, and of the intermediate CA (whose CRL is in the same
    file), still get in."""
    bad = pki.fresh_client(uniq("tls-crl-bad"))
    pki.root.revoke(bad)
    b, _ = crl_broker(make_broker, pki, tmp_path)
    for version in (12, 13):
        kind, why = attempt(b.port, client_ctx(pki, cert=bad, version=version), 5)
        assert kind == "refused", why
        assert "transport_failed" in log_line(b, "certificate revoked")
    for cert in (pki.dev1, pki.dev3):
        assert attempt(b.port, client_ctx(pki, cert=cert), 5) == ("connack", 0)


def test_crl_must_cover_the_chain(make_broker, pki, tmp_path):
    """CRL checking covers every CA of the chain: with only the root's CRL, a certificate
    of the intermediate CA is refused (no CRL for its issuer), the root's are not."""
    crl = str(tmp_path / "root-only.crl.pem")
    pki.root.crl(crl)
    b = make_broker(config=mtls_conf(pki, extra="crlfile %s\n" % crl), anonymous=False)
    assert attempt(b.port, client_ctx(pki, cert=pki.dev1), 5) == ("connack", 0)
    assert attempt(b.port, client_ctx(pki, cert=pki.dev3), 5)[0] == "refused"
    assert "transport_failed" in log_line(b, "unable to get certificate CRL")


def test_crl_reload_drops_live_sessions(make_broker, pki, tmp_path):
    """Revoke, emit the CRL, SIGHUP: the live sessions of the revoked certificates end
    within seconds (paho 5.0 and raw 5.0 get DISCONNECT 0x98, a 3.1.1 client is closed,
    a connection that has not sent CONNECT yet is closed); a client whose certificate is
    still good stays connected and working; the revoked ones cannot come back."""
    b, crl = crl_broker(make_broker, pki, tmp_path, extra="connect_timeout 60\n")
    v_paho = pki.fresh_client(uniq("tls-crl-paho"))
    v_raw5 = pki.fresh_client(uniq("tls-crl-raw5"))
    v_raw3 = pki.fresh_client(uniq("tls-crl-raw3"))
    v_idle = pki.fresh_client(uniq("tls-crl-idle"))
    good = pki.fresh_client(uniq("tls-crl-good"))

    p5 = paho(b.port, client_ctx(pki, cert=v_paho), version=5)
    p5_log = []
    p5.c.on_log = lambda client, userdata, level, buf: p5_log.append(buf)
    keep = paho(b.port, client_ctx(pki, cert=good), version=5)
    try:
        p5.connect()
        keep.connect()
        topic = uniq("crl")
        assert keep.subscribe(topic, 1) == [1]
        r5 = tls_session(b.port, client_ctx(pki, cert=v_raw5), 5, uniq("raw5"))
        r3 = tls_session(b.port, client_ctx(pki, cert=v_raw3), 4, uniq("raw3"))
        idle = TlsRaw(b.port, client_ctx(pki, cert=v_idle, version=12))  # no CONNECT
        assert r5.ping() and r3.ping()

        for c in (v_paho, v_raw5, v_raw3, v_idle):
            pki.root.revoke(c)
        pki.crl_bundle(crl)
        sighup_and_wait(b, "tls_reloaded")

        assert p5.wait_disconnected(10), "paho 5.0 client not disconnected"
        # paho 1.6.1 reads a DISCONNECT's reason code only if the packet is longer than
        # 2 bytes (moat sends the code alone): the code is checked on the wire below.
        assert any(x.startswith("Received DISCONNECT") for x in p5_log), p5_log
        codes = [disconnect_code(rc) for rc, _ in p5.disconnects]
        assert 0x98 in codes or codes == [7], codes
        closed, got = r5.wait_closed(10)
        assert closed, "raw 5.0 client not disconnected"
        assert got and got[0][0] == 0xE0, got
        assert parse_reason(got[0][0], got[0][1], 5)[1] == 0x98, got
        closed, got = r3.wait_closed(10)
        assert closed and not got, got
        assert idle.wait_closed(10)[0], "the connection without CONNECT was not closed"
        assert wait_for(lambda: b.output().count("certificate_revoked") >= 4, 5), \
            b.output()[-3000:]

        keep.publish(topic, b"still here", 1)
        m = keep.get(5)
        assert m is not None and m.payload == b"still here"
        assert keep.disconnects == []
        for c in (v_paho, v_raw5):
            assert attempt(b.port, client_ctx(pki, cert=c), 5)[0] == "refused"
        assert attempt(b.port, client_ctx(pki, cert=pki.dev1), 5) == ("connack", 0)
    finally:
        p5.stop()
        keep.stop()


@pytest.mark.parametrize("version", [12, 13])
def test_no_resumption_after_revocation(make_broker, pki, tmp_path, version):
    """A TLS session (ticket) saved before the certificate was revoked cannot be used to
    come back after the CRL reload: resumption skips certificate checks, so it must fail."""
    b, crl = crl_broker(make_broker, pki, tmp_path)
    cert = pki.fresh_client(uniq("tls-crl-resume"))
    ctx = client_ctx(pki, cert=cert, version=version)
    r = tls_session(b.port, ctx, 4)
    assert r.ping()
    sess = r.tls.session
    r.close()
    r = tls_session(b.port, ctx, 4, session=sess)  # resumption works before the revocation
    assert r.tls.session_reused
    r.close()
    pki.root.revoke(cert)
    pki.crl_bundle(crl)
    sighup_and_wait(b, "tls_reloaded")
    try:
        r = TlsRaw(b.port, ctx, session=sess)
    except (ssl.SSLError, OSError):
        return  # refused at the handshake
    try:
        reused = r.tls.session_reused
        r.send(connect_packet(uniq("resumed"), 4))
        p = r.recv_packet(5)
    except OSError:
        p = None
    finally:
        r.close()
    assert p is None, "a revoked certificate came back (session reused: %s)" % reused


def test_crl_reload_failure_keeps_serving(make_broker, pki, tmp_path):
    """A CRL file that no longer parses fails the reload (logged); the old CRL and the
    live sessions stay."""
    b, crl = crl_broker(make_broker, pki, tmp_path)
    r = tls_session(b.port, client_ctx(pki, cert=pki.dev1), 5)
    with open(crl, "w") as f:
        f.write("-----BEGIN X509 CRL-----\nnot a crl\n-----END X509 CRL-----\n")
    sighup_and_wait(b, "tls_reload_failed")
    assert "crlfile" in log_line(b, "tls_reload_failed")
    assert r.ping() and roundtrip(r)
    assert attempt(b.port, client_ctx(pki, cert=pki.dev2), 5) == ("connack", 0)
    r.close()


def test_crl_expired(make_broker, pki, tmp_path):
    """A CRL past its nextUpdate fails closed for new handshakes ("CRL has expired"); the
    live sessions are only warned about (tls_recheck_failed), not dropped: only a
    revocation ends a live session. A fresh CRL and SIGHUP let clients in again."""
    b, crl = crl_broker(make_broker, pki, tmp_path)
    r = tls_session(b.port, client_ctx(pki, cert=pki.dev1), 5)
    pki.crl_bundle(crl, lastupdate="20200101000000Z", nextupdate="20200201000000Z")
    sighup_and_wait(b, "tls_reloaded")
    assert "CRL has expired" in log_line(b, "tls_recheck_failed")
    assert r.ping() and roundtrip(r)
    assert attempt(b.port, client_ctx(pki, cert=pki.dev2), 5)[0] == "refused"
    assert "transport_failed" in log_line(b, "certificate: CRL has expired")
    pki.crl_bundle(crl)
    sighup_and_wait(b, "tls_reloaded")
    assert attempt(b.port, client_ctx(pki, cert=pki.dev2), 5) == ("connack", 0)
    r.close()


# ======================================================================================
# certificate reload
# ======================================================================================

def test_certificate_reload_keeps_connections(make_broker, pki, tmp_path):
    """Replacing certfile/keyfile and sending SIGHUP: live connections (paho 5.0 and raw
    3.1.1) stay and keep working; new connections get the new certificate. A broken new
    certfile, or a key that does not match, fails the reload and leaves the last good
    certificate in place."""
    cert, key = str(tmp_path / "server.pem"), str(tmp_path / "server.key")
    shutil.copy(pki.server.cert, cert)
    shutil.copy(pki.server.key, key)
    b = make_broker(config="certfile %s\nkeyfile %s\ncafile %s\n" % (cert, key, pki.ca))
    assert served_serial(b.port, pki) == pki.server.serial
    topic = uniq("reload")
    sub = paho(b.port, client_ctx(pki), version=5)
    try:
        sub.connect()
        assert sub.subscribe(topic, 1) == [1]
        r = tls_session(b.port, client_ctx(pki), 4)

        new = pki.root.issue(uniq("tls-server-new"), "/CN=localhost",
                             san="DNS:localhost, IP:127.0.0.1", eku="serverAuth")
        shutil.copy(new.key, key + ".tmp")
        os.replace(key + ".tmp", key)
        shutil.copy(new.cert, cert + ".tmp")
        os.replace(cert + ".tmp", cert)
        sighup_and_wait(b, "tls_reloaded")
        assert served_serial(b.port, pki) == new.serial != pki.server.serial
        assert r.ping() and roundtrip(r)
        r.send(publish_packet(topic, b"after reload", 1, 3))
        m = sub.get(5)
        assert m is not None and m.payload == b"after reload"
        assert sub.disconnects == []

        # broken certfile: the reload fails, the new-but-good certificate stays
        with open(cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
        sighup_and_wait(b, "tls_reload_failed")
        assert "certfile" in log_line(b, "tls_reload_failed")
        assert served_serial(b.port, pki) == new.serial
        assert r.ping()

        # a certificate whose key is not in keyfile: refused too
        other = pki.root.issue(uniq("tls-server-other"), "/CN=localhost",
                               san="DNS:localhost, IP:127.0.0.1", eku="serverAuth")
        shutil.copy(other.cert, cert)
        sighup_and_wait(b, "tls_reload_failed")
        assert "key values mismatch" in log_line(b, "tls_reload_failed port=%d reason=\"keyfile"
                                                 % b.port)
        assert served_serial(b.port, pki) == new.serial

        late = paho(b.port, client_ctx(pki), version=4)
        try:
            late.connect()
            late.publish(topic, b"late", 1)
        finally:
            late.stop()
        m = sub.get(5)
        assert m is not None and m.payload == b"late"
        assert r.ping()
        r.close()
    finally:
        sub.stop()
        shutil.copy(pki.server.cert, cert)  # leave a good file for teardown's sake


# ======================================================================================
# TLS-PSK
# ======================================================================================

PSK_A = "00112233445566778899aabbccddeeff"
PSK_B = "deadbeefcafebabe0123456789abcdef0123456789abcdef"


def psk_broker(make_broker, tmp_path, extra="use_identity_as_username true\n"):
    path = str(tmp_path / "psk.txt")
    with open(path, "w") as f:
        f.write("# identity:hexkey\ndev-a:%s\n\ndev-b:%s\n" % (PSK_A, PSK_B))
    return make_broker(config="psk_file %s\npsk_hint moat\n%s" % (path, extra),
                       anonymous=False)


def psk_args(identity, key, version):
    return ["--psk", key, "--psk-identity", identity, "--tls-version", version]


def test_psk_tls12(make_broker, pki, tmp_path):
    """mosquitto_pub/sub with --psk over TLS 1.2 (ECDHE-PSK): the PSK identity is the
    user name and authenticates the client (allow_anonymous false)."""
    b = psk_broker(make_broker, tmp_path)
    env = max_tls12_env(tmp_path)
    topic = uniq("psk")
    rc, out = mosq(MOSQUITTO_PUB, b.port, *psk_args("dev-a", PSK_A, "tlsv1.2"), "-i", "psk-a",
                   "-t", topic, "-m", "psk12", "-r", "-q", "1", env=env)
    assert rc == 0, out + b.output()[-2000:]
    rc, out = mosq(MOSQUITTO_SUB, b.port, *psk_args("dev-b", PSK_B, "tlsv1.2"), "-i", "psk-b",
                   "-t", topic, "-C", "1", "-W", "10", env=env)
    assert rc == 0 and out.strip() == "psk12", out
    line = log_line(b, 'connect client_id="psk-a"')
    assert "tls=TLSv1.2 cipher=ECDHE-PSK-" in line, line
    assert log_user(b, "psk-a") == "dev-a"
    assert log_user(b, "psk-b") == "dev-b"
    mosq(MOSQUITTO_PUB, b.port, *psk_args("dev-a", PSK_A, "tlsv1.2"), "-t", topic, "-n", "-r",
         env=env)


def test_psk_tls13(make_broker, pki, tmp_path):
    """TLS 1.3 external PSK (mosquitto's --tls-version tlsv1.3): the identity must be
    the user name and authenticate the client there too."""
    b = psk_broker(make_broker, tmp_path)
    topic = uniq("psk13")
    rc, out = mosq(MOSQUITTO_PUB, b.port, *psk_args("dev-a", PSK_A, "tlsv1.3"), "-i", "psk13",
                   "-t", topic, "-m", "x", "-q", "1")
    assert rc == 0, "%s\n%s" % (out, b.output()[-2000:])
    line = log_line(b, 'connect client_id="psk13"')
    assert "tls=TLSv1.3" in line, line
    assert log_user(b, "psk13") == "dev-a"


def test_psk_s_client_tls12(make_broker, tmp_path):
    """openssl s_client -psk over TLS 1.2 speaks MQTT: the CONNACK comes back."""
    b = psk_broker(make_broker, tmp_path)
    data = connect_packet("psk-sclient", 4) + disconnect_packet(version=4)
    rc, out = s_client(b.port, "-tls1_2", "-psk", PSK_B, "-psk_identity", "dev-b", "-msg",
                       script=[(0.5, data), (1.0, b"")])
    assert "PSK identity hint: moat" in out, out
    assert re.search(r"Cipher is (ECDHE-)?PSK-", out), out
    assert log_user(b, "psk-sclient") == "dev-b"


def test_psk_forward_secret_only(make_broker, tmp_path):
    """ciphers on a PSK listener replaces the default list, PSK suites included: with
    ECDHE-PSK-CHACHA20-POLY1305 alone, plain PSK suites (no forward secrecy) are refused."""
    b = psk_broker(make_broker, tmp_path, extra="ciphers ECDHE-PSK-CHACHA20-POLY1305\n")
    rc, out = s_client(b.port, "-tls1_2", "-psk", PSK_A, "-psk_identity", "dev-a",
                       script=[(0.5, b"")])
    assert "Cipher is ECDHE-PSK-CHACHA20-POLY1305" in out, out
    rc, out = s_client(b.port, "-tls1_2", "-psk", PSK_A, "-psk_identity", "dev-a",
                       "-cipher", "PSK-AES128-GCM-SHA256", script=[(0.5, b"")])
    assert "Cipher is PSK-AES128-GCM-SHA256" not in out, out
    log_line(b, "no shared cipher")


def test_psk_and_certificates_on_one_listener(make_broker, pki, tmp_path):
    """certfile and psk_file together: PSK devices and certificate holders share the
    listener, each identified by its own credential. mosquitto_pub --psk offers certificate
    suites too: the broker must still pick a PSK suite for it."""
    b = psk_broker(make_broker, tmp_path, extra=mtls_conf(pki).replace(
        "require_certificate true\n", ""))
    rc, out = mosq(MOSQUITTO_PUB, b.port, *psk_args("dev-a", PSK_A, "tlsv1.2"), "-i", "both-psk",
                   "-t", "t", "-m", "x", env=max_tls12_env(tmp_path))
    assert rc == 0, out
    assert log_user(b, "both-psk") == "dev-a"
    assert attempt(b.port, client_ctx(pki, cert=pki.dev1), 5, "both-cert") == ("connack", 0)
    assert log_user(b, "both-cert") == "device-1"
    assert attempt(b.port, client_ctx(pki), 5)[1] == 0x87  # neither: no identity


@pytest.mark.parametrize("version", ["tlsv1.2", "tlsv1.3"])
def test_psk_wrong_key_or_identity(make_broker, tmp_path, version):
    b = psk_broker(make_broker, tmp_path)
    env = max_tls12_env(tmp_path) if version == "tlsv1.2" else None
    wrong = PSK_A[:-2] + "00"
    rc, out = mosq(MOSQUITTO_PUB, b.port, *psk_args("dev-a", wrong, version), "-i", "bad-key",
                   "-t", "t", "-m", "x", env=env)
    assert rc != 0, out
    rc, out = mosq(MOSQUITTO_PUB, b.port, *psk_args("nobody", PSK_A, version), "-i", "bad-id",
                   "-t", "t", "-m", "x", env=env)
    assert rc != 0, out
    assert 'client_id="bad-key"' not in b.output()
    assert 'client_id="bad-id"' not in b.output()
    assert b.output().count("transport_failed") >= 2, b.output()[-2000:]


def test_psk_file_reload(make_broker, tmp_path):
    """psk_file is re-read on SIGHUP: a removed identity can no longer connect, a new one
    can; a live session of the removed identity is not ended (it holds no certificate to
    re-check)."""
    b = psk_broker(make_broker, tmp_path)
    env = max_tls12_env(tmp_path)
    topic = uniq("pskreload")
    sub = subprocess.Popen([MOSQUITTO_SUB, "-h", "127.0.0.1", "-p", str(b.port), "-i", "live-b",
                            "-t", topic, "-C", "1", "-W", "30"] +
                           psk_args("dev-b", PSK_B, "tlsv1.2"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        log_line(b, 'connect client_id="live-b"')
        time.sleep(0.5)  # let its SUBSCRIBE land
        with open(str(tmp_path / "psk.txt"), "w") as f:
            f.write("dev-a:%s\ndev-c:%s\n" % (PSK_A, PSK_B))
        sighup_and_wait(b, "tls_reloaded")
        rc, out = mosq(MOSQUITTO_PUB, b.port, *psk_args("dev-b", PSK_B, "tlsv1.2"), "-i",
                       "gone-b", "-t", topic, "-m", "x", env=env)
        assert rc != 0, out
        rc, out = mosq(MOSQUITTO_PUB, b.port, *psk_args("dev-c", PSK_B, "tlsv1.2"), "-i",
                       "new-c", "-t", topic, "-m", "to live-b", "-q", "1", env=env)
        assert rc == 0, out
        out, _ = sub.communicate(timeout=30)
        assert sub.returncode == 0 and out.decode().strip() == "to live-b", out
        assert log_user(b, "new-c") == "dev-c"
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()


def run_moatd(conf_text, tmp_path, timeout=10):
    """Starts moatd with conf_text and expects it to refuse to start. Returns (rc, output)."""
    conf = str(tmp_path / ("bad-%s.conf" % uuid.uuid4().hex[:6]))
    with open(conf, "w") as f:
        f.write(conf_text)
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    p = subprocess.Popen([MOATD, "-c", conf, "-v"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.terminate()
        try:
            out, _ = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        raise AssertionError("moatd started with a config it must refuse:\n%s\n%s"
                             % (conf_text, out.decode("utf-8", "replace")))
    out = out.decode("utf-8", "replace")
    for bad in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"):
        assert bad not in out, out
    return p.returncode, out


@pytest.mark.parametrize("content,message", [
    ("", "no identity:key lines"),
    ("# only a comment\n\n", "no identity:key lines"),
    ("dev-a:xyz\n", "the key is not hex"),
    ("dev-a\n", "expected identity:hexkey"),
    (":00ff\n", "expected identity:hexkey"),
])
def test_psk_file_refused_at_start(tmp_path, content, message):
    """An empty or malformed psk_file stops moatd at start with a clear message (an empty
    one must never mean "no key needed")."""
    path = str(tmp_path / "psk.txt")
    with open(path, "w") as f:
        f.write(content)
    rc, out = run_moatd("listener %d 127.0.0.1\npsk_file %s\n" % (free_port(), path), tmp_path)
    assert rc != 0 and message in out, out


def test_tls_config_errors_refused_at_start(pki, tmp_path):
    """Bad TLS settings stop moatd at start, naming what is wrong."""
    port = free_port()
    garbage = str(tmp_path / "garbage.pem")
    with open(garbage, "w") as f:
        f.write("not pem\n")
    base = "listener %d 127.0.0.1\n" % port
    cases = [
        ("certfile %s\n" % pki.server.cert, "needs a keyfile"),
        ("certfile %s\nkeyfile %s\n" % (pki.server.cert, pki.dev1.key), "key values mismatch"),
        ("certfile %s\nkeyfile %s\n" % (garbage, pki.server.key), "certfile"),
        (server_conf(pki, cafile=False, extra="cafile %s\n" % garbage), "cafile"),
        (server_conf(pki, extra="crlfile %s\n" % garbage), "crlfile"),
        (server_conf(pki, extra="ciphers NO-SUCH-CIPHER\n"), "ciphers"),
        (server_conf(pki, extra="ciphers_tls1.3 TLS_NO_SUCH\n"), "ciphers"),
        (server_conf(pki, extra="tls_curves P-999\n"), "tls_curves"),
        (server_conf(pki, extra="dhparamfile %s\n" % garbage), "dhparamfile"),
    ]
    for text, message in cases:
        rc, out = run_moatd(base + text, tmp_path)
        assert rc != 0 and message in out, "%s\n%s" % (text, out)


def test_tls_settings_without_certificate_refused(pki, tmp_path):
    """A listener with TLS settings (cafile, require_certificate) but no certfile or
    psk_file must not silently serve plain MQTT: moatd refuses to start."""
    text = "listener %d 127.0.0.1\ncafile %s\nrequire_certificate true\n" % (free_port(),
                                                                           pki.ca)
    rc, out = run_moatd(text, tmp_path, timeout=5)
    assert rc != 0, out


# ======================================================================================
# robustness
# ======================================================================================

def read_to_eof(sock, timeout=10):
    """Reads until EOF or reset; returns (closed, data)."""
    data = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        sock.settimeout(max(0.05, deadline - time.time()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            return True, data
        if not chunk:
            return True, data
        data += chunk
    return False, data


def client_hello(pki):
    """The bytes of a real TLS ClientHello."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx(pki).wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def test_plaintext_and_http_on_tls_port(shared, pki):
    """Plaintext MQTT and an HTTP request on the TLS port: that socket is closed without
    an MQTT answer, the event is logged, and a TLS client connected meanwhile works."""
    bystander = tls_session(shared.port, client_ctx(pki), 5)
    for data in (connect_packet(uniq("plain"), 4), connect_packet(uniq("plain5"), 5),
                 b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n"):
        s = socket.create_connection(("127.0.0.1", shared.port), timeout=5)
        s.sendall(data)
        closed, got = read_to_eof(s)
        assert closed, "the broker kept a plaintext socket open"
        assert not got.startswith(b"\x20"), got
        addr_line(shared, s)
        s.close()
        assert bystander.ping()
    assert roundtrip(bystander)
    bystander.close()


def test_garbage_handshakes(shared, pki):
    """Random bytes, broken records and truncated ClientHellos: each socket is closed
    and logged; a TLS client connected before keeps working, and new ones get in."""
    rnd = random.Random(4)
    hello = client_hello(pki)
    bystander = tls_session(shared.port, client_ctx(pki), 4)
    blobs = []
    for i in range(15):  # invalid from the first bytes: closed without our help
        blobs.append((bytes([rnd.choice([0x00, 0x17, 0x30, 0x80, 0xff])]) +
                      rnd.randbytes(rnd.randint(4, 300)), False))
    blobs += [
        (b"\x16\x03\x01\xff\xff" + rnd.randbytes(100), True),   # a record too long
        (b"\x16\x03\x03\x00\x05\x01\x00\x00\x01\x00", False),   # a tiny ClientHello
        (b"\x16\x03\x01\x00\x40" + rnd.randbytes(64), False),   # random handshake body
        (hello[:len(hello) // 2], True),                        # half a ClientHello
        (hello[:5] + rnd.randbytes(len(hello) - 5), False),     # a mangled ClientHello
        (hello + rnd.randbytes(200), False),                    # a hello, then garbage
    ]
    for i in range(10):  # random bytes of any kind, then our end closes for writing
        blobs.append((rnd.randbytes(rnd.randint(1, 2000)), True))
    n = shared.output().count("transport_failed")
    for data, half_close in blobs:
        s = socket.create_connection(("127.0.0.1", shared.port), timeout=5)
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
            closed, _ = read_to_eof(s, timeout=8)
            assert closed, "garbage %r... kept its socket open" % data[:16]
        finally:
            s.close()
    assert wait_for(lambda: shared.output().count("transport_failed") >= n + len(blobs) - 3,
                    5), shared.output()[-3000:]
    assert bystander.ping() and roundtrip(bystander)
    assert attempt(shared.port, client_ctx(pki), 5) == ("connack", 0)
    bystander.close()


def test_slowloris_handshake(shared, pki):
    """A ClientHello sent one byte every 0.3 s is cut by connect_timeout (3 s here), long
    before it is complete; so is a handshake completed without a CONNECT."""
    hello = client_hello(pki)
    s = socket.create_connection(("127.0.0.1", shared.port), timeout=5)
    idle = TlsRaw(shared.port, client_ctx(pki))
    start = time.time()
    closed = False
    try:
        for i, byte in enumerate(hello):
            try:
                s.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            r, _, _ = select.select([s], [], [], 0.3)
            if r:
                try:
                    closed = s.recv(4096) == b""
                except ConnectionResetError:
                    closed = True
                if closed:
                    break
            if time.time() - start > 30:
                break
        assert closed, "a slowloris handshake was not closed"
        assert i < len(hello) - 1, "the whole ClientHello went through"
        assert time.time() - start < 20
        addr_line(shared, s, "security kind=connect_timeout")
        assert idle.wait_closed(10)[0], "a TLS connection without CONNECT stayed open"
    finally:
        s.close()
        idle.close()
    assert attempt(shared.port, client_ctx(pki), 4) == ("connack", 0)


def test_many_concurrent_handshakes(shared, pki):
    """50 clients handshaking at once (TLS 1.2 and 1.3, half with a client certificate)
    all get their CONNACK."""
    n = 50
    barrier = threading.Barrier(n)
    results = [None] * n

    def one(i):
        ctx = client_ctx(pki, cert=pki.dev1 if i % 2 else None, version=12 if i % 3 == 0 else 13)
        try:
            barrier.wait(20)
            results[i] = attempt(shared.port, ctx, 4 if i % 4 else 5, uniq("many%d" % i))
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = ("error", repr(e))

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r == ("connack", 0) for r in results), results


# ======================================================================================
# session resumption
# ======================================================================================

def resumed_tls13(port, pki, tmp_path):
    """Two s_client runs with -sess_out/-sess_in over TLS 1.3; returns the second's output."""
    sess = str(tmp_path / ("sess-%s.pem" % uuid.uuid4().hex[:6]))
    rc, out1 = s_client(port, "-tls1_3", "-CAfile", pki.ca, "-sess_out", sess,
                        script=[(1.0, b"")])
    assert handshake_ok(out1), out1
    if not os.path.exists(sess):
        return out1, None
    rc, out2 = s_client(port, "-tls1_3", "-CAfile", pki.ca, "-sess_in", sess)
    return out1, out2


def test_session_resumption(shared, pki, tmp_path):
    """With tls_session_tickets (the default), a reconnecting client resumes its session:
    s_client -reconnect over TLS 1.2, -sess_out/-sess_in over TLS 1.3."""
    rc, out = s_client(shared.port, "-tls1_2", "-CAfile", pki.ca, "-reconnect")
    assert out.count("Reused, TLSv1.2") >= 4, out
    out1, out2 = resumed_tls13(shared.port, pki, tmp_path)
    assert out2 is not None, "no session ticket arrived:\n" + out1
    assert "Reused, TLSv1.3" in out2, out2


@pytest.mark.parametrize("version", [12, 13])
def test_resumption_ends_at_reload(make_broker, pki, version):
    """A SIGHUP starts a new TLS context: sessions saved before it are not resumed (the
    client falls back to a full handshake and gets in)."""
    b = make_broker(config=server_conf(pki))
    ctx = client_ctx(pki, version=version)
    r = tls_session(b.port, ctx, 4)
    assert r.ping()
    sess = r.tls.session
    r.close()
    r = tls_session(b.port, ctx, 4, session=sess)
    assert r.tls.session_reused
    r.close()
    sighup_and_wait(b, "tls_reloaded")
    r = tls_session(b.port, ctx, 4, session=sess)
    assert not r.tls.session_reused
    assert r.ping()
    r.close()


def test_session_resumption_off(make_broker, pki, tmp_path):
    """tls_session_tickets false: no connection is resumed, over TLS 1.2 (neither by ticket
    nor by session id) or TLS 1.3."""
    b = make_broker(config=server_conf(pki, extra="tls_session_tickets false\n"))
    out1, out2 = resumed_tls13(b.port, pki, tmp_path)
    assert "NewSessionTicket" not in out1
    assert out2 is None or "Reused" not in out2, out2
    rc, out = s_client(b.port, "-tls1_2", "-CAfile", pki.ca, "-reconnect")
    assert handshake_ok(out), out
    assert "Reused" not in out, out


# ======================================================================================
# key update
# ======================================================================================

class KeyUpdates:
    """Counts the TLS 1.3 KeyUpdate messages a client receives and sends."""

    def __init__(self):
        self.read = 0
        self.written = 0
        self.lock = threading.Lock()

    def __call__(self, conn, direction, version, content_type, msg_type, data):
        if content_type == ssl._TLSContentType.HANDSHAKE and \
                msg_type == ssl._TLSMessageType.KEY_UPDATE:
            with self.lock:
                if direction == "read":
                    self.read += 1
                else:
                    self.written += 1


def test_key_update_after_bytes(make_broker, pki):
    """tls_key_update_bytes 4096: a TLS 1.3 subscriber receiving ~100 KB gets KeyUpdates
    from the broker (seen in its TLS message trace), answers them, and receives every
    message intact; a TLS 1.2 client on the same listener is unaffected."""
    b = make_broker(config=server_conf(pki, extra="tls_key_update_bytes 4096\n"))
    ku = KeyUpdates()
    sub = tls_session(b.port, client_ctx(pki, version=13, msg_cb=ku), 5, uniq("ku-sub"))
    topic = uniq("ku")
    sub.subscribe([(topic, 1)])
    pub = tls_session(b.port, client_ctx(pki, version=12), 4, uniq("ku-pub"))
    n, size = 200, 500
    for i in range(n):
        body = (b"%05d" % i) * (size // 5)
        pub.send(publish_packet(topic, body, 1, i + 1))
        if i % 20 == 19:
            pub.publishes(0, timeout=0.01)
    got = sub.publishes(n, timeout=30)
    assert [m.payload[:5] for m in got] == [b"%05d" % i for i in range(n)]
    assert all(m.payload == m.payload[:5] * (size // 5) for m in got)
    assert ku.read >= 5, "KeyUpdates received: %d" % ku.read
    assert sub.ping() and roundtrip(sub)
    assert ku.written >= 1, "the client never answered with its own KeyUpdate"
    assert pub.ping()
    sub.close()
    pub.close()


def test_key_update_after_seconds(make_broker, pki):
    """tls_key_update_seconds 1: after more than a second, the broker's next write comes
    with a KeyUpdate."""
    b = make_broker(config=server_conf(pki, extra="tls_key_update_seconds 1\n"))
    ku = KeyUpdates()
    r = tls_session(b.port, client_ctx(pki, version=13, msg_cb=ku), 4)
    first = ku.read
    time.sleep(2.5)
    assert r.ping() and r.ping()
    assert ku.read > first, "no KeyUpdate after the interval"
    time.sleep(2.5)
    before = ku.read
    assert r.ping() and roundtrip(r)
    assert ku.read > before
    r.close()


# ======================================================================================
# TLS and plain listeners side by side
# ======================================================================================

def test_tls_and_plain_listeners(make_broker, pki):
    """One broker, a TLS listener and a plain one: clients on both exchange messages."""
    plain = free_port()
    b = make_broker(config=server_conf(pki) + "listener %d 127.0.0.1\nallow_anonymous true\n"
                    % plain)
    log_line(b, "started")
    listening = [x for x in b.output().splitlines() if " listening " in x]
    assert any("port=%d " % b.port in x and "tls=yes" in x for x in listening), listening
    assert any("port=%d " % plain in x and "tls=no" in x for x in listening), listening
    topic = uniq("both")
    tls_sub = paho(b.port, client_ctx(pki), version=5)
    plain_sub = Client(plain, client_id=uniq("plain"), version=4)
    try:
        tls_sub.connect()
        plain_sub.connect()
        assert tls_sub.subscribe(topic, 1) == [1]
        assert plain_sub.subscribe(topic, 1) == [1]
        rc, out = mosq(MOSQUITTO_PUB, b.port, "--cafile", pki.ca, "-t", topic, "-m", "from-tls",
                       "-q", "1")
        assert rc == 0, out
        rc, out = mosq(MOSQUITTO_PUB, plain, "-t", topic, "-m", "from-plain", "-q", "1")
        assert rc == 0, out
        for c in (tls_sub, plain_sub):
            got = sorted(m.payload for m in c.wait_messages(2))
            assert got == [b"from-plain", b"from-tls"], got
    finally:
        tls_sub.stop()
        plain_sub.stop()
    # the TLS port does not speak plain MQTT, the plain port does not speak TLS
    s = socket.create_connection(("127.0.0.1", b.port), timeout=5)
    s.sendall(connect_packet(uniq(), 4))
    assert read_to_eof(s)[0]
    s.close()
    assert attempt(plain, client_ctx(pki), 4)[0] == "refused"


def test_tls_burst_then_silence_loses_nothing(shared, pki):
    """A TLS publisher sends a burst of QoS 0 messages in one go and then goes quiet. What
    the broker's TLS layer has already decrypted raises no socket event: it must still be
    read (a bug lost the tail of such bursts). The subscriber gets every message."""
    from moatlib import connect_packet, publish_packet
    topic = uniq("burst")
    sub = paho(shared.port, {"ca_certs": pki.ca}, version=4)
    sub.connect()
    assert sub.subscribe(topic, 0) == [0]
    n = 20000
    for round_ in range(3):
        raw = socket.create_connection(("127.0.0.1", shared.port), timeout=10)
        tls = client_ctx(pki).wrap_socket(raw, server_hostname="localhost")
        tls.sendall(connect_packet(uniq("p"), 4))
        tls.recv(4)
        tls.sendall(b"".join(publish_packet(topic, b"%d" % i) for i in range(n)))
        want = (round_ + 1) * n  # the publisher says nothing more
        assert wait_for(lambda: len(sub.messages) >= want, 20), \
            "round %d: %d of %d arrived" % (round_, len(sub.messages) - round_ * n, n)
        tls.close()
    sub.c.disconnect()
