"""The framework of the sentinel's tests (test_sentinel_attacks.py, test_sentinel_flood.py,
test_sentinel_detect.py): a real moatd whose allow-list is 127.0.0.1 only, attacks from
127.0.0.2 (or 127.0.0.3..), and what the tests check.

- ``scene`` (a pytest fixture; a test module imports it with moatlib's ``make_broker`` and
  ``watchdog``), a ``Scene``: the broker (``start``, or ``begin`` with the watcher and the
  bystander), its audit log (``scene.audit``, an ``Audit``), config reloads (``reload``),
  and every client a test makes, stopped at teardown: paho clients from a chosen source
  address (``client``/``Mqtt``, ``login``, ``guess``), raw connections (``raw``/``RawFrom``,
  ``session``);
- ``Bystander``: an allow-listed subscriber and publisher exchanging a numbered QoS 1
  sequence through the whole attack; ``check()`` says that nothing was lost;
- ``SysWatch``: an allow-listed subscriber to ``$SYS/moat/security/#`` (or other $SYS
  topics);
- the common checks: the detection (``detection()``, ``no_detection()``), the response
  (``banned()``, ``sentenced()``: detection and ban; ``disconnected()``: detection and kick;
  ``refused_at_accept()``), the ban's end (``wait_ban_over()``, ``ban_runs_its_course()``);
  and attacks: ``raw_connack()``, ``first_reply()``, ``connect_burst()``, ``until_kicked()``.

Windows, thresholds and ban steps (``BAN_S``) are small so that each test takes a few
seconds; every wait polls with a deadline.
"""
import datetime
import json
import re
import signal
import socket
import threading
import time

import pytest

from authlib import (V3_BAD_USER_OR_PASSWORD, V3_NOT_AUTHORIZED,  # noqa: F401
                     V5_BAD_USER_OR_PASSWORD, uniq, write_passwd)
from moatlib import Client, Raw, connect5_packet, connect_packet, parse_connack, wait_for

GOOD = "127.0.0.1"       # allow-listed: the bystander, the watcher
ATTACKER = "127.0.0.2"   # not allow-listed
BAN_S = 3                # the ban step, unless a test sets sentinel_ban_steps

V5_SERVER_BUSY = 0x89
V5_BANNED = 0x8A
V5_ADMINISTRATIVE_ACTION = 0x98
V3_SERVER_UNAVAILABLE = 3


def host_of(addr):
    """"1.2.3.4:5678" -> "1.2.3.4"; "[::1]:5" -> "::1"; a bare host as it is."""
    if not addr:
        return ""
    if addr.startswith("["):
        return addr[1:addr.index("]")]
    if addr.count(":") == 1:
        return addr.rsplit(":", 1)[0]
    return addr


def wall(ts):
    """An audit "ts" ("2026-01-02T03:04:05.678Z") as seconds since the epoch."""
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def starts(prefix):
    return lambda v: isinstance(v, str) and v.startswith(prefix)


def has(part):
    return lambda v: isinstance(v, str) and part in v


def _matches(e, match):
    for k, want in match.items():
        v = e.get(k)
        if callable(want):
            if not want(v):
                return False
        elif v != want:
            return False
    return True


# ---- the audit log ----

class Audit:
    """The audit log (JSON lines); each event also gets "host": its addr without the port."""

    def __init__(self, path):
        self.path = path

    def events(self, **match):
        try:
            with open(self.path, encoding="utf-8") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        out = []
        for line in data.split("\n")[:-1]:  # only whole lines
            e = json.loads(line)
            e["host"] = host_of(e.get("addr", ""))
            if _matches(e, match):
                out.append(e)
        return out

    def wait(self, timeout=10, **match):
        """The first event matching (values may be predicates), waiting for it."""
        got = wait_for(lambda: self.events(**match), timeout)
        assert got, "no audit event %r; the log ends:\n%s" % (match, self.tail())
        return got[0]

    def wait_count(self, n, timeout=10, **match):
        """Waits for n events matching; returns them all."""
        got = wait_for(lambda: len(self.events(**match)) >= n, timeout)
        assert got, "fewer than %d audit events %r; the log ends:\n%s" % (n, match, self.tail())
        return self.events(**match)

    def tail(self, n=40):
        return "\n".join(json.dumps({k: v for k, v in e.items() if k not in ("prev", "hash")})
                         for e in self.events()[-n:])


# ---- clients ----

class Mqtt(Client):
    """A moatlib paho Client that connects from a chosen source address (bind_address) and
    never reconnects by itself."""

    def __init__(self, port, src=GOOD, client_id=None, version=5, username=None,
                 password=None, keepalive=60):
        super().__init__(port, client_id=client_id or uniq("c"), version=version,
                         keepalive=keepalive)
        self.src = src
        self.c.reconnect_delay_set(60, 120)
        if username is not None:
            self.c.username_pw_set(username, password)

    def attempt(self, timeout=10):
        """Connects; returns the CONNACK code (an int), or None when the connection ended
        (or timed out) without one. An accepted client keeps running on paho's thread."""
        kw = {"clean_start": True, "properties": self.props} if self.version == 5 else {}
        try:
            self.c.connect("127.0.0.1", self.port, self.keepalive, bind_address=self.src, **kw)
        except OSError:
            return None
        deadline = time.time() + timeout
        while not self.connacks and not self.disconnects and time.time() < deadline:
            try:
                if self.c.loop(0.05) != 0:
                    break
            except OSError:
                break
        if not self.connacks:
            self.close_socket()
            return None
        rc = self.connacks[-1][1]
        rc = getattr(rc, "value", rc)
        if rc == 0:
            self.c.loop_start()
            self.started = True
        else:
            self.close_socket()
        return rc

    def payloads(self, topic):
        """The payloads received on topic, in order."""
        with self.lock:
            return [m.payload for m in self.messages if m.topic == topic]

    def close_socket(self):
        s = self.c.socket()
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def disconnect_codes(self):
        with self.lock:
            return [getattr(rc, "value", rc) for rc, _ in self.disconnects]

    def stop(self):
        super().stop()
        self.close_socket()


class RawFrom(Raw):
    """moatlib's Raw connection, from a chosen source address."""

    def __init__(self, port, src=ATTACKER, timeout=5):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                          source_address=(src, 0))
        self.buf = b""
        self.skipped = []


def closed_at_accept(port, src=ATTACKER, timeout=5):
    """True if a connection from src is closed by the broker without a single byte (an
    address refused at accept), though the client sent its CONNECT."""
    r = RawFrom(port, src)
    try:
        r.send_quiet(connect_packet(uniq("probe"), 4))
        closed, got = r.wait_closed(timeout)
        return closed and got == [] and r.buf == b""
    finally:
        r.close()


def first_reply(r, timeout=5):
    """The first packet the broker sends on Raw r, or None if it closes r first."""
    deadline = time.time() + timeout
    while True:
        p = r._parse()
        if p is not None:
            return p
        left = deadline - time.time()
        assert left > 0, "no reply and no close in %s s" % timeout
        r.s.settimeout(left)
        try:
            chunk = r.s.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return None
        if not chunk:
            return None
        r.buf += chunk


def raw_connack(port, src, version=4, client_id=None, **kw):
    """Sends a CONNECT from src; returns the CONNACK code and the open Raw (None if refused),
    or (None, None) when the connection ended without a CONNACK."""
    r = RawFrom(port, src)
    r.version = version
    pkt = (connect5_packet(client_id or uniq("raw"), **kw) if version == 5 else
           connect_packet(client_id or uniq("raw"), version, **kw))
    if not r.send_quiet(pkt):
        r.close()
        return None, None
    p = first_reply(r)
    if p is None or p[0] != 0x20:
        r.close()
        return None, None
    rc = parse_connack(p[1], version)[1]
    if rc != 0:
        r.close()
        return rc, None
    return rc, r


class Bystander:
    """Well-behaved clients from 127.0.0.1: a 5.0 subscriber at QoS 1 and a 3.1.1 publisher
    sending "0", "1", "2"... at QoS 1 every 20 ms until check(), which says that every
    message arrived, in order, and that neither client was disconnected."""

    def __init__(self, scene):
        self.topic = uniq("bystander/seq")
        self.sub = scene.client(GOOD, client_id=uniq("bystander-sub"), version=5)
        assert self.sub.attempt() == 0
        assert self.sub.subscribe(self.topic, qos=1) == [1]
        self.pub = scene.client(GOOD, client_id=uniq("bystander-pub"), version=4)
        assert self.pub.attempt() == 0
        self.sent = 0
        self.error = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while not self.stopping.is_set():
                info = self.pub.c.publish(self.topic, b"%d" % self.sent, qos=1)
                info.wait_for_publish(10)
                if not info.is_published():
                    self.error = "message %d not acknowledged in 10 s" % self.sent
                    return
                self.sent += 1
                self.stopping.wait(0.02)
        except Exception as e:  # noqa: BLE001 - reported by check()
            self.error = repr(e)

    def numbers(self):
        return [int(p) for p in self.sub.payloads(self.topic)]

    def check(self, min_sent=20, timeout=15):
        # a short attack: let the sequence grow to min_sent before ending it
        wait_for(lambda: self.sent >= min_sent or self.error or not self.thread.is_alive(),
                 timeout)
        self.stopping.set()
        self.thread.join(15)
        assert not self.thread.is_alive(), "the bystander's publisher is stuck"
        assert self.error is None, "bystander publisher: " + self.error
        assert self.sent >= min_sent, "the bystander published only %d messages" % self.sent
        want = set(range(self.sent))
        wait_for(lambda: want <= set(self.numbers()), timeout)
        got = self.numbers()
        missing = sorted(want - set(got))
        assert not missing, "bystander lost %d of %d messages: %r" % (
            len(missing), self.sent, missing[:20])
        firsts = []
        for n in got:
            if n not in firsts:
                firsts.append(n)
        assert firsts == sorted(firsts), "bystander got its messages out of order"
        assert self.sub.disconnects == [] and self.pub.disconnects == [], \
            "a bystander was disconnected: %r %r" % (self.sub.disconnects, self.pub.disconnects)
        return self.sent


class SysWatch:
    """An allow-listed client subscribed to $SYS/moat/security/# (or to the filters given)."""

    def __init__(self, scene, filters=("$SYS/moat/security/#",)):
        self.c = scene.client(GOOD, client_id=uniq("watch"), version=5)
        assert self.c.attempt() == 0
        for f in filters:
            granted = self.c.subscribe(f, qos=1)
            assert len(granted) == 1 and granted[0] < 0x80, granted

    def events(self, kind, **match):
        out = []
        for payload in self.c.payloads("$SYS/moat/security/" + kind):
            e = json.loads(payload)
            e["host"] = host_of(e.get("addr", ""))
            assert e["kind"] == kind
            if _matches(e, match):
                out.append(e)
        return out

    def wait(self, kind, timeout=10, **match):
        got = wait_for(lambda: self.events(kind, **match), timeout)
        assert got, "no $SYS/moat/security/%s message %r" % (kind, match)
        return got[0]

    def last(self, topic):
        """The last number published on topic (None before the first)."""
        got = self.c.payloads(topic)
        return int(got[-1]) if got else None


class Scene:
    """A broker with an audit log and the allow-list 127.0.0.1, and the clients of a test
    (all stopped at teardown)."""

    def __init__(self, make, tmp_path):
        self.make = make
        self.tmp = tmp_path
        self.made = []
        self.audit = Audit(str(tmp_path / "audit.log"))
        self.b = None

    def start(self, config, allow=GOOD, users=None, **kw):
        """Starts moatd with config, after: the audit log; "sentinel_allow <allow>" (None:
        the default allow-list, loopback); a password file holding users (a dict), if given;
        "sentinel_ban_steps BAN_S" unless config sets the steps."""
        text = "audit_log %s\n" % self.audit.path
        if allow:
            text += "sentinel_allow %s\n" % allow
        if users is not None:
            text += "password_file %s\n" % self.passwd(users)
        if "sentinel_ban_steps" not in config:
            text += "sentinel_ban_steps %d\n" % BAN_S
        self.b = self.make(config=text + config, **kw)
        self.port = self.b.port
        return self.b

    def begin(self, config, watch=True, **kw):
        """start(), then the $SYS watcher (None if not watch) and the bystander."""
        self.start(config, **kw)
        return (self.watch() if watch else None), self.bystander()

    def client(self, src=ATTACKER, **kw):
        c = Mqtt(self.port, src, **kw)
        self.made.append(c)
        return c

    def raw(self, src=ATTACKER):
        r = RawFrom(self.port, src)
        self.made.append(r)
        return r

    def session(self, src=ATTACKER, version=4, **kw):
        """A raw connection from src that got CONNACK 0 (raw_connack's arguments)."""
        rc, r = raw_connack(self.port, src, version, **kw)
        assert rc == 0, "CONNACK %r" % rc
        self.made.append(r)
        return r

    def bystander(self):
        return Bystander(self)

    def watch(self, *filters):
        return SysWatch(self, filters or ("$SYS/moat/security/#",))

    def passwd(self, users):
        return write_passwd(self.tmp / "passwd", users)

    def login(self, src, username=None, password=None, version=5, client_id=None):
        """A paho attempt from src: the CONNACK code or None."""
        c = self.client(src, username=username, password=password, version=version,
                        client_id=client_id)
        rc = c.attempt()
        if rc == 0:
            c.stop()
        return rc

    def guess(self, n, src=ATTACKER, username="alice", word="guess", version=5, **kw):
        """n logins from src with wrong passwords (word-0, word-1...), each refused as such."""
        want = V5_BAD_USER_OR_PASSWORD if version == 5 else V3_BAD_USER_OR_PASSWORD
        for i in range(n):
            rc = self.login(src, username, "%s-%d" % (word, i), version, **kw)
            assert rc == want, "wrong password %d: CONNACK %r" % (i, rc)

    def reload(self, add="", drop="", outcome="applied"):
        """Appends add to the broker's config file and removes the lines of drop, then
        SIGHUP; waits for the new "reload" event (its reason starts with outcome), and a
        moment more: the ACL and the sentinel's settings are applied right after it."""
        with open(self.b.conf) as f:
            text = f.read()
        for line in drop.splitlines(keepends=True):
            text = text.replace(line, "")
        with open(self.b.conf, "w") as f:
            f.write(text + add)
        n = len(self.audit.events(kind="reload"))
        self.b.proc.send_signal(signal.SIGHUP)
        self.audit.wait_count(n + 1, kind="reload")
        e = self.audit.events(kind="reload")[n]
        assert e["reason"].startswith(outcome), e
        time.sleep(0.3)
        return e

    def unpunished(self, **login):
        """No ban was placed, and the attacker logs in (login: scene.login's arguments)."""
        assert self.audit.events(kind="banned") == [], self.audit.tail()
        assert self.login(ATTACKER, **login) == 0

    def close(self):
        for c in self.made:
            try:
                if isinstance(c, Raw):
                    c.close()
                else:
                    c.stop()
            except Exception:  # noqa: BLE001 - teardown
                pass


@pytest.fixture
def scene(make_broker, tmp_path):
    s = Scene(make_broker, tmp_path)
    yield s
    s.close()


# ---- common checks ----

def detection(scene, detector, watch=None, timeout=10, **match):
    """The audit log's detection by detector (and, with watch, the $SYS copy)."""
    e = scene.audit.wait(timeout, kind="detection", reason=starts(detector + ":"), **match)
    if watch is not None:
        watch.wait("detection", timeout, reason=starts(detector + ":"), **match)
    return e


def banned(scene, watch=None, step=BAN_S, timeout=10, **match):
    """The audit log's "banned" event (and its $SYS copy): its value is the step."""
    e = scene.audit.wait(timeout, kind="banned", **match)
    assert e.get("value") == step, e
    assert re.search(r"\boffence 1\b", e["reason"]), e
    if watch is not None:
        watch.wait("banned", timeout, **match)
    return e


def sentenced(scene, watch, reason, step=BAN_S, **key):
    """The detection whose reason is reason ("<detector>: <n> in <w> s by <key> -> ban"),
    and the first ban it placed on key (default: the attacker's address), both also on $SYS
    with watch. Returns the "banned" event."""
    key = key or {"host": ATTACKER}
    det = detection(scene, reason.split(":")[0], watch, **key)
    assert det["reason"] == reason, det
    return banned(scene, watch, step, **key)


def disconnected(scene, watch, reason, client_id):
    """The detection whose reason is reason ("<detector>: <n> in <w> s by client id ->
    disconnect") for client_id, also on $SYS with watch; the "kicked" event of that client
    from the attacker's address; and no ban anywhere. Returns the detection."""
    det = detection(scene, reason.split(":")[0], watch, client_id=client_id)
    assert det["reason"] == reason, det
    scene.audit.wait(kind="kicked", client_id=client_id, host=ATTACKER)
    assert scene.audit.events(kind="banned") == [], scene.audit.tail()
    return det


def no_detection(scene, *detectors):
    for d in detectors:
        assert scene.audit.events(kind="detection", reason=starts(d + ":")) == [], d


def wait_ban_over(ban, get_in, step=BAN_S, slack=6.0, gentle=False, early=0.3):
    """Polls get_in() (true once the attacker is let in again) until the ban that began with
    audit event ban ends. It must not end before its step (less early s), and must end
    within slack s after. gentle: do not try before the step is over (retries during a name
    ban count as failed logins). Returns the seconds the ban lasted as seen here."""
    t0 = wall(ban["ts"])
    if gentle:
        time.sleep(max(0.0, t0 + step + 0.3 - time.time()))
    deadline = t0 + step + slack
    while True:
        if get_in():
            lasted = time.time() - t0
            assert lasted >= step - early, "ban ended after %.2f s, its step is %d s" % (
                lasted, step)
            return lasted
        assert time.time() < deadline, "the ban did not end %d s after its %d s step" % (
            slack, step)
        time.sleep(0.2)


def refused_at_accept(scene, src=ATTACKER):
    """The attacker's paho client gets no CONNACK, a raw probe sees the socket closed without
    a byte, and the audit log has the ban_hit."""
    rc = scene.client(src, version=5).attempt(timeout=5)
    assert rc is None, "a banned address got a CONNACK: %r" % rc
    assert closed_at_accept(scene.port, src)
    scene.audit.wait(kind="ban_hit", host=src)


def ban_runs_its_course(scene, ban, get_in=None, step=BAN_S):
    """An address ban of the attacker: refused at accept while it holds, then let in
    (get_in(), by default a paho login) once its step is over, not before."""
    refused_at_accept(scene)
    wait_ban_over(ban, get_in or (lambda: scene.login(ATTACKER) == 0), step)


def connect_burst(scene, n, src=ATTACKER):
    """n connections from src at once, each sending its CONNECT; returns how many got
    CONNACK 0 (the others must be closed without a reply)."""
    socks = [scene.raw(src) for _ in range(n)]
    for r in socks:
        r.send_quiet(connect_packet(uniq("burst"), 4))
    accepted = 0
    for r in socks:
        p = first_reply(r)
        if p is not None:
            assert p[0] == 0x20 and p[1][1] == 0, p
            accepted += 1
        r.close()
    return accepted


def until_kicked(scene, client_id, subscribe, publish, qos=0, tries=200):
    """An attacker's 5.0 client publishing to publish(i) and subscribing to subscribe(i) in
    turn, every 10 ms, until the sentinel disconnects it: DISCONNECT 0x98. Returns it."""
    a = scene.client(ATTACKER, client_id=client_id, version=5)
    assert a.attempt() == 0
    for i in range(tries):
        if a.disconnects:
            break
        if i % 2:
            a.c.subscribe(subscribe(i), qos)
        else:
            a.c.publish(publish(i), b"?", qos)
        time.sleep(0.01)
    assert a.wait_disconnected(10), "%s was never disconnected" % client_id
    assert a.disconnect_codes()[0] == V5_ADMINISTRATIVE_ACTION, a.disconnect_codes()
    return a
