"""Helpers shared by test_auth.py and test_acl.py (authentication and authorization, issue 5).

- password files: entries in Mosquitto's ``$7$`` form computed here (fast, 101 iterations, as
  mosquitto_passwd 2.0 writes them), ``moat passwd`` and Debian's ``mosquitto_passwd``;
- CONNECT attempts that return the CONNACK code instead of asserting it: raw MQTT (plain or
  TLS) and paho-mqtt (3.1.1 and 5.0);
- the SCRAM exchange over MQTT 5.0 AUTH packets, driven by scram_client.py;
- the broker's log: ``security kind=...`` events, and SIGHUP reloads.

Everything talks to 127.0.0.1 only and every wait is bounded.
"""
import base64
import hashlib
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
import uuid

import pytest

from moatlib import (MOAT, MOATD, Broker, Client, Raw, connect5_packet,  # noqa: F401
                     connect_packet, packet, parse_connack, parse_reason, props, varint,
                     free_port, wait_for)
import scram_client

TIMEOUT = 20
MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "mosquitto_pub"
MOSQUITTO_SUB = shutil.which("mosquitto_sub") or "mosquitto_sub"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "mosquitto_passwd"

# CONNACK codes
V5_BAD_USER_OR_PASSWORD = 0x86
V5_NOT_AUTHORIZED = 0x87
V5_BAD_AUTH_METHOD = 0x8C
V3_BAD_USER_OR_PASSWORD = 4
V3_NOT_AUTHORIZED = 5


def uniq(name="t"):
    return "%s-%s" % (name, uuid.uuid4().hex[:8])


# ---- password files ----

def mosquitto_entry(password, iterations=101):
    """A PBKDF2-SHA512 entry as mosquitto_passwd 2.0 writes it: $7$ITER$SALT$HASH (base64,
    12-byte salt, 64-byte hash). Cheap to check with 101 iterations, which keeps tests that
    log in many times fast."""
    salt = os.urandom(12)
    dk = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return "$7$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(),
                            base64.b64encode(dk).decode())


def write_passwd(path, users):
    """Writes a password file: users maps a name to a password (hashed here as $7$) or to a
    ready hash (a str starting with '$'). Returns path (str)."""
    lines = []
    for user, pw in users.items():
        lines.append("%s:%s\n" % (user, pw if pw.startswith("$") else mosquitto_entry(pw)))
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write("".join(lines))
    os.replace(tmp, str(path))  # a reload never reads half a file
    return str(path)


def entries(path):
    """user -> hash of a password file."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                user, h = line.split(":", 1)
                out[user] = h
    return out


def moat_passwd(*args, input=None):
    r = subprocess.run([MOAT, "passwd"] + [str(a) for a in args], input=input,
                       capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, "moat passwd %r: %r" % (args, r.stderr)
    return r


def mosquitto_passwd(*args, input=None):
    r = subprocess.run([MOSQUITTO_PASSWD] + [str(a) for a in args], input=input,
                       capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, "mosquitto_passwd %r: %r" % (args, r.stderr)
    return r


def write_file(path, text):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, str(path))
    return str(path)


# ---- mosquitto clients ----

def mosq(tool, port, *args, timeout=TIMEOUT, env=None):
    """Runs mosquitto_pub/sub against 127.0.0.1:port. Returns (exit code, output)."""
    cmd = [tool, "-h", "127.0.0.1", "-p", str(port)] + [str(a) for a in args]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                       env=env)
    return p.returncode, p.stdout.decode("utf-8", "replace")


# ---- TLS ----

def client_ctx(pki, cert=None):
    """A client SSLContext trusting the test CA; cert: a tls_pki.Cert to present."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.ca)
    if cert is not None:
        ctx.load_cert_chain(cert.chain, cert.key)
    return ctx


def tls_listener(pki, extra=""):
    """The TLS directives of a listener with the test server certificate and CA."""
    return "certfile %s\nkeyfile %s\ncafile %s\n%s" % (pki.server.cert, pki.server.key, pki.ca,
                                                       extra)


# ---- raw CONNECT attempts ----

def raw(port, ctx=None, timeout=10):
    """A Raw connection, over TLS when ctx is given (the handshake may raise ssl.SSLError)."""
    r = Raw(port, timeout=timeout)
    if ctx is not None:
        r.s = ctx.wrap_socket(r.s, server_hostname="localhost")
    return r


def connack(port, version=4, client_id=None, ctx=None, timeout=10, **kw):
    """Sends a CONNECT (kw: username, password, will, props...) and returns
    (code, properties, raw): code is the CONNACK's return/reason code, or None when the
    connection ended without a CONNACK (a TLS refusal, say). The Raw is left open when
    the client is in (r.version is set), else closed."""
    client_id = client_id if client_id is not None else uniq("raw")
    try:
        r = raw(port, ctx, timeout)
    except (ssl.SSLError, OSError):
        return None, {}, None
    r.version = version
    try:
        if version == 5:
            r.send(connect5_packet(client_id, **kw))
        else:
            r.send(connect_packet(client_id, version, **kw))
        p = r.recv_packet(timeout)
    except (ssl.SSLError, OSError):
        p = None
    if p is None or p[0] != 0x20:
        r.close()
        return None, {}, None
    _, rc, pr = parse_connack(p[1], version)
    if rc != 0:
        r.close()
        return rc, pr, None
    r.connack_props = pr
    return rc, pr, r


def login(port, version=4, **kw):
    """connack() that must succeed: returns the open Raw."""
    rc, pr, r = connack(port, version, **kw)
    assert rc == 0, "CONNACK refused: %r" % (rc,)
    return r


def timed_refusal(port, version, username, password):
    """Seconds from sending a CONNECT to its CONNACK, and the code."""
    r = Raw(port, timeout=20)
    r.version = version
    pkt = (connect5_packet(uniq("tm"), username=username, password=password) if version == 5
           else connect_packet(uniq("tm"), version, username=username, password=password))
    t0 = time.perf_counter()
    r.send(pkt)
    p = r.recv_packet(20)
    dt = time.perf_counter() - t0
    r.close()
    assert p is not None and p[0] == 0x20, "no CONNACK: %r" % (p,)
    return dt, parse_connack(p[1], version)[1]


# ---- SCRAM over AUTH ----

def auth_packet(reason, pr=b""):
    return packet(0xF0, bytes([reason]) + varint(len(pr)) + pr)


def scram_login(port, user, password, mech="SCRAM-SHA-256", client_id=None, ctx=None,
                expect_auth=True):
    """MQTT 5.0 enhanced authentication: CONNECT with the client-first-message, AUTH 0x18
    with the server-first-message, AUTH 0x18 with the client-final-message, CONNACK.
    Returns (code, CONNACK properties, Raw or None, scram state). When the broker accepts,
    the server-final-message's signature is checked here (verify_server_final raises on a
    wrong one). code None: the connection ended without a CONNACK."""
    first, st = scram_client.client_first(user, mech)
    r = raw(port, ctx)
    r.version = 5
    r.send(connect5_packet(client_id or uniq("scram"),
                           props=props(auth_method=mech, auth_data=first)))
    p = r.recv_packet(10)
    if p is None:
        return None, {}, None, st
    if p[0] >> 4 == 2:  # refused before any exchange
        assert not expect_auth, "CONNACK instead of AUTH: %r" % (p,)
        r.close()
        return parse_connack(p[1], 5)[1], parse_connack(p[1], 5)[2], None, st
    assert p[0] == 0xF0, "expected AUTH, got %r" % (p,)
    _, reason, pr = parse_reason(p[0], p[1], 5)
    assert reason == 0x18, "AUTH reason %#x" % reason
    assert pr.get("auth_method") == mech, pr
    st["server_first"] = pr["auth_data"]
    final, _ = scram_client.client_final(st, pr["auth_data"], password)
    r.send(auth_packet(0x18, props(auth_method=mech, auth_data=final)))
    p = r.recv_packet(10)
    if p is None:
        return None, {}, None, st
    assert p[0] == 0x20, "expected CONNACK, got %r" % (p,)
    _, rc, cp = parse_connack(p[1], 5)
    if rc != 0:
        r.close()
        return rc, cp, None, st
    assert cp.get("auth_method") == mech, cp
    assert scram_client.verify_server_final(st, cp["auth_data"])
    r.connack_props = cp
    return rc, cp, r, st


# ---- paho ----

def paho(port, version=5, username=None, password=None, ctx=None, client_id=None, will=None):
    """A moatlib Client (not connected) with credentials and optional TLS context; it never
    reconnects by itself."""
    c = Client(port, client_id=client_id or uniq("paho"), version=version, will=will)
    c.c.reconnect_delay_set(60, 120)
    if username is not None:
        c.c.username_pw_set(username, password)
    if ctx is not None:
        c.c.tls_set_context(ctx)
    return c


def paho_attempt(port, version=5, timeout=10, **kw):
    """Connects a paho client and returns (code, client): code is the CONNACK's
    return/reason code (an int), or None if no CONNACK came. A refused client is stopped;
    an accepted one is left running (stop it)."""
    c = paho(port, version, **kw)
    args = {"clean_start": True} if version == 5 else {}
    try:
        c.c.connect("127.0.0.1", port, 60, **args)
    except (ssl.SSLError, OSError):
        return None, c
    c.c.loop_start()
    c.started = True
    c._wait(lambda: c.connacks or c.disconnects, timeout)
    rc = c.connacks[-1][1] if c.connacks else None
    rc = getattr(rc, "value", rc)
    if rc != 0:
        c.stop()
    return rc, c


def paho_login(port, version=5, **kw):
    rc, c = paho_attempt(port, version, **kw)
    assert rc == 0, "paho CONNACK refused: %r" % (rc,)
    return c


def roundtrip(sub, pub, topic, payload=None, qos=1, timeout=5):
    """pub (a paho Client) publishes; sub (subscribed) must receive it. Returns the message."""
    payload = payload or uniq("m").encode()
    pub.publish(topic, payload, qos=qos)
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = sub.get(max(0.05, deadline - time.time()))
        if m is not None and m.payload == payload:
            return m
    raise AssertionError("message %r on %r not received" % (payload, topic))


# ---- the log ----

EVENT_RE = re.compile(r'security kind=(\S+) addr=(\S+) client_id=("(?:[^"\\]|\\.)*"|-) '
                      r'user=("(?:[^"\\]|\\.)*"|-) method=(\S+)'
                      r'(?: access=(\S+))?(?: topic=("(?:[^"\\]|\\.)*"))?'
                      r'(?: reason="([^"]*)")?')


def _unq(s):
    if s is None or s == "-":
        return None
    return s[1:-1].replace('\\"', '"').replace("\\\\", "\\") if s.startswith('"') else s


def events(b, kind=None):
    """The broker's security events, as dicts (kind, addr, client_id, user, method, access,
    topic, reason), in log order."""
    out = []
    for line in b.output().splitlines():
        m = EVENT_RE.search(line)
        if not m:
            continue
        e = {"kind": m.group(1), "addr": m.group(2), "client_id": _unq(m.group(3)),
             "user": _unq(m.group(4)), "method": m.group(5), "access": m.group(6),
             "topic": _unq(m.group(7)), "reason": m.group(8), "line": line}
        if kind is None or e["kind"] == kind:
            out.append(e)
    return out


def wait_event(b, kind, timeout=10, **match):
    """Waits for a security event of kind whose fields equal match; returns it."""
    def find():
        for e in events(b, kind):
            if all(e.get(k) == v for k, v in match.items()):
                return e
        return None
    e = wait_for(find, timeout)
    assert e, "no security event kind=%s %r in:\n%s" % (kind, match, b.output()[-4000:])
    return e


def wait_log(b, needle, count=1, timeout=10):
    """Waits until at least count log lines contain needle; returns them."""
    def find():
        got = [ln for ln in b.output().splitlines() if needle in ln]
        return got if len(got) >= count else None
    got = wait_for(find, timeout)
    assert got, "fewer than %d log lines with %r:\n%s" % (count, needle, b.output()[-4000:])
    return got


def reload(b, timeout=10):
    """SIGHUP, and waits for the broker to say it re-read its config (the password and ACL
    files are re-read right after that line)."""
    def n():
        return sum(1 for ln in b.output().splitlines()
                   if "reloaded file=" in ln or "reload_partial" in ln or "reload_failed" in ln)
    before = n()
    b.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: n() > before, timeout), "no reload line:\n" + b.output()[-3000:]


# ---- a broker whose config text needs its own port ----

class TemplateBroker(Broker):
    """A moatd whose whole config is template, with {port} replaced by its free port (for
    listeners the test writes itself, e.g. without allow_anonymous)."""

    def __init__(self, template, **kw):
        self.template = template
        super().__init__(config="", listener=False, **kw)

    def start(self):
        if self.template is not None:
            with open(self.conf, "w") as f:
                f.write(self.template.replace("{port}", str(self.port)))
            self.template = None
        super().start()


@pytest.fixture
def template_broker():
    made = []

    def make(template, **kw):
        b = TemplateBroker(template, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        rc = b.stop()
        b.check_clean()
        assert rc == 0, "moatd exited with %r:\n%s" % (rc, b.output()[-4000:])


def start_fails(config, timeout=20):
    """Runs moatd on config text that must be refused: returns (exit code, output)."""
    import tempfile
    d = tempfile.mkdtemp(prefix="moat-test-")
    conf = os.path.join(d, "moat.conf")
    with open(conf, "w") as f:
        f.write(config)
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    p = subprocess.run([MOATD, "-c", conf, "-v"], capture_output=True, timeout=timeout, env=env)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def echo(r, payload=b"echo"):
    """A raw session subscribes to a topic of its own and gets back what it publishes at
    QoS 1 (its PUBACK and the PUBLISH may come in either order). True if both came."""
    from moatlib import PUBACK, Publish, ack_packet, publish_packet
    topic = uniq("echo")
    assert r.subscribe([(topic, 1)], pid=9) == [1]
    r.send(publish_packet(topic, payload, 1, 10, version=r.version))
    got, acked = [], False
    deadline = time.time() + 5
    while (not got or not acked) and time.time() < deadline:
        p = r.recv_packet(max(0.05, deadline - time.time()))
        if p is None:
            break
        if p[0] >> 4 == 3:
            m = Publish(p[0], p[1], r.version)
            got.append(m.payload)
            r.send(ack_packet(PUBACK, m.pid, r.version))
        elif p[0] >> 4 == 4:
            acked = True
    return acked and got == [payload]
