"""Shared helpers for moat's integration tests: start the real moatd, talk raw MQTT.

Tests import what they need: ``from moatlib import broker, Broker, raw_connect, ...``.
Every broker runs on 127.0.0.1 on a free port with a temporary config, and is
checked at teardown for sanitizer reports in its stderr.
"""
import os
import socket
import struct
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("MOAT_BUILD", os.path.join(ROOT, "build"))
MOATD = os.path.join(BUILD, "moatd")
MOAT = os.path.join(BUILD, "moat")


_handed_out = set()


def free_port(host="127.0.0.1"):
    """A port free now on host, never one this process was given before: two calls in a
    row could otherwise get the same port from the kernel, and a config with two
    listeners on it is refused."""
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class Broker:
    """A running moatd. ``config`` is extra config text; a listener is added."""

    def __init__(self, config="", anonymous=True, listener=True, args=(), asan_options=""):
        self.asan_options = asan_options  # appended to ASAN_OPTIONS, e.g. "quarantine_size_mb=1"
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="moat-test-")
        self.conf = os.path.join(self.dir, "moat.conf")
        self.log_path = os.path.join(self.dir, "moatd.log")
        text = ""
        if listener:
            text += "listener %d 127.0.0.1\n" % self.port
            text += "allow_anonymous %s\n" % ("true" if anonymous else "false")
        text += config
        # MOAT_TEST_WORKERS=N runs every broker with N worker threads (unless the test sets
        # its own), e.g. to tell a threading bug from others.
        if os.environ.get("MOAT_TEST_WORKERS") and "workers " not in config:
            text += "workers %d\n" % int(os.environ["MOAT_TEST_WORKERS"])
        with open(self.conf, "w") as f:
            f.write(text)
        self.args = list(args)
        self.proc = None
        self.start()

    def start(self):
        self.log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        if getattr(self, "asan_options", ""):
            env["ASAN_OPTIONS"] += ":" + self.asan_options
        self.proc = subprocess.Popen([MOATD, "-c", self.conf, "-v"] + self.args,
                                     stdout=self.log, stderr=self.log, env=env)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("moatd exited at start:\n" + self.output())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("moatd did not listen:\n" + self.output())

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=15, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("moatd did not stop in time:\n" + self.output()[-4000:])
        self.log.close()
        return self.proc.returncode

    def check_clean(self):
        out = self.output()
        for bad in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"):
            assert bad not in out, "sanitizer report in moatd output:\n" + out[-6000:]

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


@pytest.fixture
def broker():
    b = Broker()
    yield b
    rc = b.stop()
    b.check_clean()
    assert rc == 0, "moatd exited with %r:\n%s" % (rc, b.output()[-4000:])


@pytest.fixture
def make_broker():
    made = []

    def make(**kw):
        b = Broker(**kw)
        made.append(b)
        return b

    yield make
    for b in made:
        rc = b.stop()
        b.check_clean()
        assert rc == 0, "moatd exited with %r:\n%s" % (rc, b.output()[-4000:])


def restartable(new):
    """The body of a fixture making restartable brokers (objects with .b, a Broker, and
    .stop()): yields a function calling new(*args), and stops those still running at
    the end (a test may have killed one)."""
    made = []

    def make(*args, **kw):
        obj = new(*args, **kw)
        made.append(obj)
        return obj

    yield make
    for obj in made:
        if obj.b.proc.poll() is None:
            obj.stop()


# ---- raw MQTT, for what clients refuse to send ----

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def mqtt_str(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack("!H", len(s)) + s


def packet(first, body=b""):
    return bytes([first]) + varint(len(body)) + body


def connect_packet(client_id="raw", version=4, clean=True, keepalive=60, props=b"",
                   will=None, username=None, password=None):
    name = b"MQIsdp" if version == 3 else b"MQTT"
    flags = 0x02 if clean else 0
    payload = mqtt_str(client_id)
    if will:
        topic, msg, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        if version == 5:
            payload += varint(0)
        payload += mqtt_str(topic) + mqtt_str(msg)
    if username is not None:
        flags |= 0x80
        payload += mqtt_str(username)
    if password is not None:
        flags |= 0x40
        payload += mqtt_str(password)
    body = mqtt_str(name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        body += varint(len(props)) + props
    return packet(0x10, body + payload)


class Raw:
    """A raw MQTT connection for sending what real clients will not."""

    def __init__(self, port, timeout=5):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def recv_packet(self, timeout=5):
        """Returns (first_byte, body), or None if the broker closed the connection."""
        self.s.settimeout(timeout)
        while True:
            p = self._parse()
            if p is not None:
                return p
            try:
                chunk = self.s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return None
            if not chunk:
                return None
            self.buf += chunk

    def _parse(self):
        if len(self.buf) < 2:
            return None
        mult, rl, i = 1, 0, 1
        while True:
            if i >= len(self.buf):
                return None
            b = self.buf[i]
            rl += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
        if len(self.buf) < i + rl:
            return None
        first, body = self.buf[0], self.buf[i:i + rl]
        self.buf = self.buf[i + rl:]
        return first, body

    def closed(self, timeout=5):
        """True if the broker closes the connection (after any packets it sends)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            p = self.recv_packet(timeout=max(0.05, deadline - time.time()))
            if p is None:
                return True
        return False

    def close(self):
        self.s.close()


def raw_connect(port, version=4, client_id="raw", **kw):
    """Connects and checks the CONNACK accepts. Returns the Raw connection."""
    r = Raw(port)
    r.send(connect_packet(client_id, version, **kw))
    p = r.recv_packet()
    assert p is not None and p[0] == 0x20, "no CONNACK: %r" % (p,)
    assert p[1][1] == 0, "CONNACK refused: %r" % (p,)
    return r


# ---- more raw MQTT: MQTT 5.0 properties, packet builders and parsers ----
#
# Added for the broker core's integration tests (test_broker_*.py). Everything
# above keeps its behaviour; note that Raw.closed() also counts a read timeout
# as "closed": use Raw.wait_closed() when the difference matters.

PINGREQ = b"\xc0\x00"

# property id -> (name, type); types: u8 u16 u32 vint str bin pair
PROPS = {
    0x01: ("payload_format", "u8"), 0x02: ("message_expiry", "u32"),
    0x03: ("content_type", "str"), 0x08: ("response_topic", "str"),
    0x09: ("correlation_data", "bin"), 0x0B: ("subscription_id", "vint"),
    0x11: ("session_expiry", "u32"), 0x12: ("assigned_client_id", "str"),
    0x13: ("server_keep_alive", "u16"), 0x15: ("auth_method", "str"),
    0x16: ("auth_data", "bin"), 0x17: ("request_problem_info", "u8"),
    0x18: ("will_delay", "u32"), 0x19: ("request_response_info", "u8"),
    0x1A: ("response_info", "str"), 0x1C: ("server_reference", "str"),
    0x1F: ("reason_string", "str"), 0x21: ("receive_maximum", "u16"),
    0x22: ("topic_alias_maximum", "u16"), 0x23: ("topic_alias", "u16"),
    0x24: ("maximum_qos", "u8"), 0x25: ("retain_available", "u8"),
    0x26: ("user_property", "pair"), 0x27: ("maximum_packet_size", "u32"),
    0x28: ("wildcard_sub_available", "u8"), 0x29: ("subscription_id_available", "u8"),
    0x2A: ("shared_sub_available", "u8"),
}
PROP_IDS = {name: pid for pid, (name, _) in PROPS.items()}
REPEATABLE = ("user_property", "subscription_id")


def prop(name, value):
    """One encoded property: prop("topic_alias", 3), prop("user_property", ("k", "v"))."""
    pid = PROP_IDS[name]
    kind = PROPS[pid][1]
    if kind == "u8":
        data = bytes([value])
    elif kind == "u16":
        data = struct.pack("!H", value)
    elif kind == "u32":
        data = struct.pack("!I", value)
    elif kind == "vint":
        data = varint(value)
    elif kind in ("str", "bin"):
        data = mqtt_str(value)
    else:
        data = mqtt_str(value[0]) + mqtt_str(value[1])
    return bytes([pid]) + data


def props(**kw):
    """Encoded properties (without the length): props(topic_alias=1, user_property=[("a","b")])."""
    out = b""
    for name, value in kw.items():
        if name in REPEATABLE and isinstance(value, (list, tuple)) and \
                (not value or isinstance(value[0], (list, tuple, int))):
            for v in value:
                out += prop(name, v)
        else:
            out += prop(name, value)
    return out


def read_varint(data, i):
    """Returns (value, next index); raises ValueError on a bad encoding."""
    mult, value = 1, 0
    for _ in range(4):
        if i >= len(data):
            raise ValueError("varint past the end")
        b = data[i]
        i += 1
        value += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            return value, i
    raise ValueError("varint too long")


def parse_props(data, i=0):
    """Decodes a property block (with its length) at data[i:]. Returns (dict, next index).
    user_property and subscription_id are lists; other values are ints, str or bytes."""
    n, i = read_varint(data, i)
    end = i + n
    out = {}
    while i < end:
        pid, i = read_varint(data, i)
        name, kind = PROPS[pid]
        if kind == "u8":
            v, i = data[i], i + 1
        elif kind == "u16":
            v, i = struct.unpack("!H", data[i:i + 2])[0], i + 2
        elif kind == "u32":
            v, i = struct.unpack("!I", data[i:i + 4])[0], i + 4
        elif kind == "vint":
            v, i = read_varint(data, i)
        elif kind in ("str", "bin"):
            ln = struct.unpack("!H", data[i:i + 2])[0]
            v, i = data[i + 2:i + 2 + ln], i + 2 + ln
            if kind == "str":
                v = v.decode()
        else:
            k1 = struct.unpack("!H", data[i:i + 2])[0]
            k = data[i + 2:i + 2 + k1].decode()
            i += 2 + k1
            v1 = struct.unpack("!H", data[i:i + 2])[0]
            v = (k, data[i + 2:i + 2 + v1].decode())
            i += 2 + v1
        if name in REPEATABLE:
            out.setdefault(name, []).append(v)
        else:
            assert name not in out, "property %s twice" % name
            out[name] = v
    assert i == end, "property block overrun"
    return out, end


def publish_packet(topic, payload=b"", qos=0, pid=None, retain=False, dup=False, version=4,
                   props=b""):
    if isinstance(payload, str):
        payload = payload.encode()
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = mqtt_str(topic)
    if qos:
        body += struct.pack("!H", 1 if pid is None else pid)
    if version == 5:
        body += varint(len(props)) + props
    return packet(first, body + payload)


def subscribe_packet(pid, filters, version=4, props=b""):
    """filters: [(filter, options byte)] (the byte holds QoS and the 5.0 option bits)."""
    body = struct.pack("!H", pid)
    if version == 5:
        body += varint(len(props)) + props
    for f, opts in filters:
        body += mqtt_str(f) + bytes([opts])
    return packet(0x82, body)


def unsubscribe_packet(pid, filters, version=4, props=b""):
    body = struct.pack("!H", pid)
    if version == 5:
        body += varint(len(props)) + props
    for f in filters:
        body += mqtt_str(f)
    return packet(0xA2, body)


PUBACK, PUBREC, PUBREL, PUBCOMP = 0x40, 0x50, 0x62, 0x70


def ack_packet(first, pid, version=4, reason=0, props=b""):
    """PUBACK/PUBREC/PUBREL/PUBCOMP (first byte as the constants above)."""
    body = struct.pack("!H", pid)
    if version == 5 and (reason or props):
        body += bytes([reason])
        if props:
            body += varint(len(props)) + props
    return packet(first, body)


def disconnect_packet(reason=0, props=b"", version=5):
    if version != 5:
        return b"\xe0\x00"
    body = b""
    if reason or props:
        body = bytes([reason])
        if props:
            body += varint(len(props)) + props
    return packet(0xE0, body)


def sub_opts(qos=0, no_local=False, rap=False, rh=0):
    return qos | (0x04 if no_local else 0) | (0x08 if rap else 0) | (rh << 4)


class Publish:
    """A PUBLISH received from the broker."""

    def __init__(self, first, body, version):
        self.first = first
        self.qos = (first >> 1) & 3
        self.retain = bool(first & 1)
        self.dup = bool(first & 8)
        tl = struct.unpack("!H", body[:2])[0]
        self.topic = body[2:2 + tl].decode()
        i = 2 + tl
        self.pid = None
        if self.qos:
            self.pid = struct.unpack("!H", body[i:i + 2])[0]
            i += 2
        self.props = {}
        if version == 5:
            self.props, i = parse_props(body, i)
        self.payload = body[i:]

    def __repr__(self):
        return "Publish(%r, %r, qos=%d, retain=%s, dup=%s, pid=%r, props=%r)" % (
            self.topic, self.payload[:40], self.qos, self.retain, self.dup, self.pid, self.props)


def parse_connack(body, version):
    """Returns (session_present, return/reason code, properties dict)."""
    pr = {}
    if version == 5 and len(body) > 2:
        pr, _ = parse_props(body, 2)
    return bool(body[0] & 1), body[1], pr


def parse_reason(first, body, version):
    """DISCONNECT, PUBACK..PUBCOMP, AUTH from the broker: (packet id or None, reason, props)."""
    ptype = first >> 4
    i, pid = 0, None
    if ptype in (4, 5, 6, 7):
        pid = struct.unpack("!H", body[:2])[0]
        i = 2
    reason, pr = 0, {}
    if version == 5 and len(body) > i:
        reason = body[i]
        if len(body) > i + 1:
            pr, _ = parse_props(body, i + 1)
    return pid, reason, pr


def _raw_wait_closed(self, timeout=5):
    """Reads until the broker closes the connection or timeout passes.
    Returns (closed, packets): closed is True only on EOF or reset, never on a timeout."""
    got = []
    deadline = time.time() + timeout
    while True:
        while True:
            p = self._parse()
            if p is None:
                break
            got.append(p)
        left = deadline - time.time()
        if left <= 0:
            return False, got
        self.s.settimeout(left)
        try:
            chunk = self.s.recv(65536)
        except socket.timeout:
            return False, got
        except (ConnectionResetError, BrokenPipeError):
            return True, got
        if not chunk:
            return True, got
        self.buf += chunk


def _raw_send_quiet(self, data):
    """Sends, ignoring a connection the broker already closed. Returns False if it was."""
    try:
        self.s.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


def _raw_expect(self, ptype, timeout=5):
    """Next packet, which must be of type ptype (4-bit). Returns (first, body)."""
    p = self.recv_packet(timeout)
    assert p is not None, "expected packet type %d, got nothing or close" % ptype
    assert p[0] >> 4 == ptype, "expected packet type %d, got %r" % (ptype, (hex(p[0]), p[1][:40]))
    return p


def _raw_publish(self, topic, payload=b"", qos=0, pid=None, retain=False, dup=False, props=b"",
                 version=None, ack=True):
    """Sends a PUBLISH; with ack, waits for the PUBACK, or does PUBREC/PUBREL/PUBCOMP. Returns
    the reason code of the PUBACK/PUBREC (0 for QoS 0)."""
    v = version or getattr(self, "version", 4)
    self.send(publish_packet(topic, payload, qos, pid, retain, dup, v, props))
    if not qos or not ack:
        return 0
    if pid is None:
        pid = 1
    if qos == 1:
        p = self.expect(4)
        return parse_reason(p[0], p[1], v)[1]
    p = self.expect(5)
    rc = parse_reason(p[0], p[1], v)[1]
    if rc >= 0x80:
        return rc
    self.send(ack_packet(PUBREL, pid, v))
    self.expect(7)
    return rc


def _raw_subscribe(self, filters, pid=1, props=b"", version=None):
    """filters: "a/b", or [(filter, options)]. Waits for the SUBACK; returns its codes."""
    v = version or getattr(self, "version", 4)
    if isinstance(filters, str):
        filters = [(filters, 0)]
    self.send(subscribe_packet(pid, filters, v, props))
    p = self.expect(9)
    body = p[1]
    assert struct.unpack("!H", body[:2])[0] == pid
    i = 2
    if v == 5:
        _, i = parse_props(body, 2)
    return list(body[i:])


def _raw_ping(self, timeout=5):
    """True if a PINGREQ gets a PINGRESP (skipping other packets, which are kept in .skipped)."""
    if not self.send_quiet(PINGREQ):
        return False
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = self.recv_packet(max(0.05, deadline - time.time()))
        if p is None:
            return False
        if p[0] == 0xD0:
            return True
        self.skipped.append(p)
    return False


def _raw_publishes(self, n, timeout=5, ack=True):
    """Receives n PUBLISH packets (acknowledging QoS 1 and 2 fully unless ack=False).
    Returns the Publish list (shorter on timeout)."""
    v = getattr(self, "version", 4)
    out = []
    deadline = time.time() + timeout
    while len(out) < n and time.time() < deadline:
        p = self.recv_packet(max(0.05, deadline - time.time()))
        if p is None:
            break
        if p[0] >> 4 == 3:
            m = Publish(p[0], p[1], v)
            out.append(m)
            if ack and m.qos == 1:
                self.send(ack_packet(PUBACK, m.pid, v))
            elif ack and m.qos == 2:
                self.send(ack_packet(PUBREC, m.pid, v))
        elif p[0] >> 4 == 6 and ack:
            pid = struct.unpack("!H", p[1][:2])[0]
            self.send(ack_packet(PUBCOMP, pid, v))
        else:
            self.skipped.append(p)
    return out


def _raw_quiet(self, timeout=1.0):
    """Packets received within timeout (handling nothing): [] when the broker sent nothing."""
    got = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = self.recv_packet(max(0.05, deadline - time.time()))
        if p is None:
            break
        got.append(p)
    return got


Raw.wait_closed = _raw_wait_closed
Raw.send_quiet = _raw_send_quiet
Raw.expect = _raw_expect
Raw.publish = _raw_publish
Raw.subscribe = _raw_subscribe
Raw.ping = _raw_ping
Raw.publishes = _raw_publishes
Raw.quiet = _raw_quiet
Raw.version = 4
Raw.skipped = None
_raw_init = Raw.__init__


def _raw_init_ex(self, port, timeout=5):
    _raw_init(self, port, timeout)
    self.skipped = []


Raw.__init__ = _raw_init_ex


def raw_session(port, version=4, client_id="raw", **kw):
    """As raw_connect, and remembers the version and the CONNACK on the Raw:
    r.version, r.session_present, r.connack_props."""
    r = Raw(port)
    r.version = version
    r.send(connect_packet(client_id, version, **kw))
    p = r.recv_packet()
    assert p is not None and p[0] == 0x20, "no CONNACK: %r" % (p,)
    r.session_present, rc, r.connack_props = parse_connack(p[1], version)
    assert rc == 0, "CONNACK refused: %r" % (p,)
    return r


def connect5_packet(client_id="raw", clean=True, keepalive=60, props=b"", will=None,
                    will_props=b"", username=None, password=None, flags=None):
    """A 5.0 CONNECT with will properties and an optional raw flags byte."""
    fl = 0x02 if clean else 0
    payload = mqtt_str(client_id)
    if will:
        topic, msg, qos, retain = will
        fl |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += varint(len(will_props)) + will_props + mqtt_str(topic) + mqtt_str(msg)
    if username is not None:
        fl |= 0x80
        payload += mqtt_str(username)
    if password is not None:
        fl |= 0x40
        payload += mqtt_str(password)
    if flags is not None:
        fl = flags
    body = mqtt_str("MQTT") + bytes([5, fl]) + struct.pack("!H", keepalive)
    body += varint(len(props)) + props
    return packet(0x10, body + payload)


def wait_for(cond, timeout=5, interval=0.02):
    """Polls cond() until it is true or timeout passes; returns its last value."""
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v or time.time() >= deadline:
            return v
        time.sleep(interval)


# ---- paho clients ----

class Client:
    """A paho-mqtt client on its own network thread, collecting what it receives.

    version: 3 (3.1), 4 (3.1.1) or 5. For 5.0, session_expiry sets the CONNECT property.
    Received messages are paho MQTTMessage objects in self.messages (a list) and in a queue
    for get(). connect() waits for the CONNACK and raises if refused.
    """

    def __init__(self, port, client_id="", version=5, clean=True, session_expiry=None,
                 keepalive=60, will=None, connect_props=None, userdata=None):
        import queue
        import threading
        import paho.mqtt.client as mqtt
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes
        self.mqtt = mqtt
        self.port = port
        self.version = version
        self.clean = clean
        self.keepalive = keepalive
        proto = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}[version]
        if version == 5:
            self.c = mqtt.Client(client_id=client_id, protocol=proto, userdata=userdata)
        else:
            self.c = mqtt.Client(client_id=client_id, clean_session=clean, protocol=proto,
                                 userdata=userdata)
        self.props = None
        if version == 5 and (session_expiry is not None or connect_props):
            self.props = Properties(PacketTypes.CONNECT)
            if session_expiry is not None:
                self.props.SessionExpiryInterval = session_expiry
            for k, v in (connect_props or {}).items():
                setattr(self.props, k, v)
        if will:
            topic, payload, qos, retain = will[:4]
            self.c.will_set(topic, payload, qos, retain, will[4] if len(will) > 4 else None)
        self.lock = threading.Condition()
        self.messages = []
        self.q = queue.Queue()
        self.connacks = []      # (flags dict, rc, properties)
        self.disconnects = []   # (rc, properties)
        self.subacks = {}
        self.unsubacks = {}
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self.c.on_disconnect = self._on_disconnect
        self.started = False

    # callbacks (paho's network thread)
    def _on_connect(self, c, u, flags, rc, properties=None):
        with self.lock:
            self.connacks.append((flags, rc, properties))
            self.lock.notify_all()

    def _on_message(self, c, u, msg):
        with self.lock:
            self.messages.append(msg)
            self.lock.notify_all()
        self.q.put(msg)

    def _on_subscribe(self, c, u, mid, granted, properties=None):
        with self.lock:
            self.subacks[mid] = granted
            self.lock.notify_all()

    def _on_unsubscribe(self, c, u, mid, *rest):
        with self.lock:
            self.unsubacks[mid] = rest
            self.lock.notify_all()

    def _on_disconnect(self, c, u, rc, properties=None):
        with self.lock:
            self.disconnects.append((rc, properties))
            self.lock.notify_all()

    def _wait(self, cond, timeout):
        with self.lock:
            return self.lock.wait_for(cond, timeout)

    def connect(self, timeout=5, clean_start=None):
        """Connects and waits for the CONNACK; returns (session_present, rc, properties)."""
        n = len(self.connacks)
        kw = {}
        if self.version == 5:
            kw["clean_start"] = self.clean if clean_start is None else clean_start
            kw["properties"] = self.props
        self.c.connect("127.0.0.1", self.port, self.keepalive, **kw)
        if not self.started:
            self.c.loop_start()
            self.started = True
        assert self._wait(lambda: len(self.connacks) > n, timeout), "no CONNACK"
        flags, rc, pr = self.connacks[-1]
        assert rc == 0, "CONNACK refused: %r" % (rc,)
        return bool(flags.get("session present")), rc, pr

    def reconnect(self, timeout=5):
        n = len(self.connacks)
        self.c.reconnect()
        assert self._wait(lambda: len(self.connacks) > n, timeout), "no CONNACK on reconnect"
        flags, rc, pr = self.connacks[-1]
        assert rc == 0, "CONNACK refused: %r" % (rc,)
        return bool(flags.get("session present"))

    def subscribe(self, topic, qos=0, timeout=5, no_local=False, rap=False, rh=0, subid=None):
        """Subscribes and waits for the SUBACK; returns the granted QoS / reason codes."""
        kw = {}
        if self.version == 5:
            from paho.mqtt.subscribeoptions import SubscribeOptions
            kw["options"] = SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=rap,
                                             retainHandling=rh)
            if subid is not None:
                from paho.mqtt.properties import Properties
                from paho.mqtt.packettypes import PacketTypes
                pr = Properties(PacketTypes.SUBSCRIBE)
                pr.SubscriptionIdentifier = subid
                kw["properties"] = pr
        else:
            kw["qos"] = qos
        rc, mid = self.c.subscribe(topic, **kw)
        assert rc == 0, "subscribe failed locally: %r" % rc
        assert self._wait(lambda: mid in self.subacks, timeout), "no SUBACK for %r" % topic
        g = self.subacks[mid]
        return [getattr(x, "value", x) for x in g]

    def unsubscribe(self, topic, timeout=5):
        rc, mid = self.c.unsubscribe(topic)
        assert self._wait(lambda: mid in self.unsubacks, timeout), "no UNSUBACK"

    def publish(self, topic, payload=b"", qos=0, retain=False, timeout=5, **properties):
        """Publishes and waits until the flow completes. properties: paho names, e.g.
        MessageExpiryInterval=10, UserProperty=[("a", "b")]."""
        pr = None
        if properties:
            from paho.mqtt.properties import Properties
            from paho.mqtt.packettypes import PacketTypes
            pr = Properties(PacketTypes.PUBLISH)
            for k, v in properties.items():
                setattr(pr, k, v)
        info = self.c.publish(topic, payload, qos, retain, pr)
        info.wait_for_publish(timeout)
        assert info.is_published(), "publish of %r not completed" % topic
        return info

    def get(self, timeout=5):
        """Next message received (MQTTMessage), or None on timeout."""
        import queue
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def wait_messages(self, n, timeout=5):
        """Waits until at least n messages arrived; returns the list of all."""
        self._wait(lambda: len(self.messages) >= n, timeout)
        with self.lock:
            return list(self.messages)

    def wait_disconnected(self, timeout=5):
        return self._wait(lambda: len(self.disconnects) > 0, timeout)

    def disconnect(self, reason=None, **properties):
        """Sends DISCONNECT (5.0: with reason code number and properties)."""
        if self.version == 5 and (reason is not None or properties):
            from paho.mqtt.reasoncodes import ReasonCodes
            from paho.mqtt.properties import Properties
            from paho.mqtt.packettypes import PacketTypes
            rc = ReasonCodes(PacketTypes.DISCONNECT, identifier=reason or 0)
            pr = None
            if properties:
                pr = Properties(PacketTypes.DISCONNECT)
                for k, v in properties.items():
                    setattr(pr, k, v)
            self.c.disconnect(rc, pr)
        else:
            self.c.disconnect()
        self.wait_disconnected(5)

    def kill(self):
        """Closes the socket without DISCONNECT (an abnormal close, so the will is sent)."""
        sock = self.c.socket()
        self.c.reconnect_delay_set(60, 120)  # paho must not reconnect behind our back
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.c.loop_stop()
        self.started = False
        if sock is not None:
            sock.close()

    def stop(self):
        if self.started:
            try:
                self.c.disconnect()
            except Exception:
                pass
            self.c.loop_stop()
            self.started = False


class clients:
    """Context manager that stops every Client made through it: with clients() as mk: a = mk(...)"""

    def __init__(self, port=None):
        self.port = port
        self.made = []

    def __enter__(self):
        return self.make

    def make(self, *args, **kw):
        if self.port is not None and (not args or not isinstance(args[0], int)):
            args = (self.port,) + args
        c = Client(*args, **kw)
        self.made.append(c)
        return c

    def __exit__(self, *exc):
        for c in self.made:
            c.stop()
        return False


@pytest.fixture(autouse=True)
def watchdog():
    """Bounds every test of a module that imports it (pytest-timeout is not installed):
    SIGALRM after MOAT_TEST_TIMEOUT seconds (default 120) fails the test."""
    import signal

    limit = int(os.environ.get("MOAT_TEST_TIMEOUT", "120"))

    def expired(signum, frame):
        raise TimeoutError("test ran longer than %d s" % limit)

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(limit)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)
