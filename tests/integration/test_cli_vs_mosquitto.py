"""moat pub / moat sub against a real Mosquitto broker and real clients.

Each broker this module needs is a Debian /usr/sbin/mosquitto started on a
free port of 127.0.0.1 with its own temporary configuration, and stopped at
the end. The moat binary is $MOAT_BUILD/moat (default: build/moat at the
repository root). What is checked, both ways against mosquitto_pub/sub and
paho, and moat to moat:

- messages at QoS 0/1/2 in MQTT 3.1, 3.1.1 and 5.0; retained messages;
- the message sources -m, -f, -l, -n, -s and --repeat;
- -C, -W (exit 27), -v, -N, -F, -R, --retained-only, -T, -E, -U, -c/-x sessions;
- 5.0 properties given with -D reaching a paho v5 subscriber, and read by -F;
- the will, published when the moat client is killed and not after SIGINT;
- CONNACK refusals and their exit codes, against a broker with a password file;
- the server's Receive Maximum, Maximum Packet Size, Maximum QoS, Retain
  Available and Topic Alias Maximum (a mosquitto configured with them), and
  topic aliases used by a server (a scripted fake server: mosquitto sends none);
- -d output: the same lines as mosquitto_pub -d, and never the password.

Every process is started with a timeout and killed if it outlives the test.
"""

import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

MOSQUITTO = "/usr/sbin/mosquitto"
if not os.path.exists(MOSQUITTO):
    pytest.skip("Mosquitto broker not installed (/usr/sbin/mosquitto): "
                "apt-get install mosquitto mosquitto-clients",
                allow_module_level=True)
for tool in ("mosquitto_pub", "mosquitto_sub", "mosquitto_passwd", "stdbuf"):
    if shutil.which(tool) is None:
        pytest.skip("%s not installed: apt-get install mosquitto mosquitto-clients" % tool,
                    allow_module_level=True)

try:
    import paho.mqtt.client as paho
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
except ImportError:  # the paho tests skip themselves
    paho = None

REPO = Path(__file__).resolve().parents[2]
MOAT = Path(os.environ.get("MOAT_BUILD", REPO / "build")) / "moat"
HOST = "127.0.0.1"
TIMEOUT = 15  # seconds any one process may take
VERSIONS = ["31", "311", "5"]
QOS = [0, 1, 2]


# ---- processes ----

def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def run(argv, input=None, timeout=TIMEOUT):
    """Runs argv to completion; returns the CompletedProcess (bytes)."""
    return subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout)


def moat(*args, **kw):
    return run([str(MOAT)] + [str(a) for a in args], **kw)


class Proc:
    """A background process whose stdout is collected by a thread."""

    def __init__(self, argv):
        self.p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = bytearray()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for chunk in iter(lambda: self.p.stdout.read1(4096), b""):
            with self.lock:
                self.out += chunk

    def wait_for(self, needle, timeout=TIMEOUT):
        """Waits until needle (bytes) appears in stdout; fails if the process ends first."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if needle in self.out:
                    return
            if self.p.poll() is not None:
                self.thread.join(1)
                with self.lock:
                    if needle in self.out:
                        return
                pytest.fail("process ended (rc %s) before printing %r: stdout %r stderr %r"
                            % (self.p.returncode, needle, bytes(self.out), self.p.stderr.read()))
            time.sleep(0.02)
        pytest.fail("no %r within %ss: stdout %r" % (needle, timeout, bytes(self.out)))

    def finish(self, timeout=TIMEOUT):
        """Waits for the end; returns (rc, stdout bytes, stderr bytes)."""
        try:
            self.p.wait(timeout)
        finally:
            self.kill()
        self.thread.join(5)
        err = self.p.stderr.read()
        self.p.stderr.close()
        return self.p.returncode, bytes(self.out), err

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(5)


@pytest.fixture
def procs():
    """Background processes of one test, killed at its end whatever happens."""
    started = []

    def start(*argv):
        pr = Proc(argv)
        started.append(pr)
        return pr

    yield start
    for pr in started:
        pr.kill()
        if pr.p.stderr and not pr.p.stderr.closed:
            pr.p.stderr.close()


DEBUG_LINE = (b"Client ", b"Subscribed (mid")


def messages(out):
    """The lines of a -d subscriber's stdout that are not debug lines."""
    return [l for l in out.split(b"\n") if l and not l.startswith(DEBUG_LINE)]


def moat_sub(procs, port, *args):
    """Starts `moat sub -d` and waits until its subscription is acknowledged."""
    pr = procs(MOAT, "sub", "-h", HOST, "-p", port, "-d", *args)
    pr.wait_for(b"Subscribed (mid")
    return pr


def mosq_sub(procs, port, *args):
    """Starts `mosquitto_sub -d` (line-buffered: it does not flush -d lines itself)."""
    pr = procs("stdbuf", "-oL", "mosquitto_sub", "-h", HOST, "-p", port, "-d", *args)
    pr.wait_for(b"Subscribed (mid")
    return pr


def mosq_pub(port, *args):
    r = run(["mosquitto_pub", "-h", HOST, "-p", str(port)] + [str(a) for a in args])
    assert r.returncode == 0, r.stderr
    return r


def pub(port, *args, **kw):
    """moat pub that must succeed."""
    r = moat("pub", "-h", HOST, "-p", port, *args, **kw)
    assert r.returncode == 0, r.stderr
    return r


# ---- brokers ----

class Broker:
    def __init__(self, tmp, name, extra=""):
        self.port = free_port()
        self.dir = tmp
        conf = tmp / (name + ".conf")
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text("listener %d %s\n%s%s" % (self.port, HOST, user, extra))
        self.log = open(tmp / (name + ".log"), "wb")
        self.p = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdin=subprocess.DEVNULL,
                                  stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.p.poll() is not None:
                raise RuntimeError("mosquitto exited: " + (tmp / (name + ".log")).read_text())
            try:
                socket.create_connection((HOST, self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("mosquitto did not listen on %s:%d" % (HOST, self.port))

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.log.close()


@pytest.fixture(scope="module", autouse=True)
def moat_binary():
    if not MOAT.exists():
        pytest.fail("%s not found: build it, or set MOAT_BUILD to its directory" % MOAT)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("mosq"), "open", "allow_anonymous true\n")
    yield b.port
    b.stop()


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mosqauth")
    pw = tmp / "passwd"
    r = run(["mosquitto_passwd", "-c", "-b", str(pw), "alice", "s3cret"])
    assert r.returncode == 0, r.stderr
    b = Broker(tmp, "auth", "allow_anonymous false\npassword_file %s\n" % pw)
    yield b.port
    b.stop()


@pytest.fixture(scope="module")
def limits_broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("mosqlim"), "limits",
               "allow_anonymous true\nmax_inflight_messages 2\nmax_packet_size 200\n"
               "max_qos 1\nretain_available false\nmax_topic_alias 3\n")
    yield b.port
    b.stop()


_topic_n = [0]


def topic(name):
    """A topic no other test uses (retained messages outlive tests)."""
    _topic_n[0] += 1
    return "moat-test/%d/%s/%d" % (os.getpid(), name, _topic_n[0])


# ---- the tool itself ----

def test_usage_and_version():
    assert moat().returncode == 2
    r = moat("help")
    assert r.returncode == 0 and b"pub" in r.stdout and b"sub" in r.stdout
    for v in ("--version", "-V"):
        r = moat(v)
        assert r.returncode == 0 and r.stdout.startswith(b"moat ")
    for cmd in ("pub", "sub"):
        r = moat(cmd, "--help")
        assert r.returncode == 0 and b"Usage: moat " + cmd.encode() in r.stdout


@pytest.mark.parametrize("args,error", [
    (["pub", "-t", "a"], b"Both topic and message must be supplied"),
    (["pub", "-m", "x"], b"Both topic and message must be supplied"),
    (["pub", "-t", "a", "-m", "x", "-n"], b"Only one type of message"),
    (["pub", "-t", "a/+", "-m", "x"], b"Invalid publish topic"),
    (["pub", "-t", "a", "-m", "x", "-q", "3"], b"Invalid QoS"),
    (["pub", "-t", "a", "-m", "x", "-c"], b"must provide a client id"),
    (["pub", "-t", "a", "-m", "x", "-V", "6"], b"Invalid protocol version"),
    (["pub", "-t", "a", "-m", "x", "-p", "0"], b"Invalid port"),
    (["pub", "-t", "a", "-m", "x", "--bogus"], b"Unknown option '--bogus'"),
    (["pub", "-t"], b"-t argument given but no topic specified"),
    (["pub", "-t", "a", "-m", "x", "-D", "publish", "no-such", "1"], b"Invalid property name"),
    (["pub", "-t", "a", "-m", "x", "-D", "connect", "content-type", "a"], b"not allowed for connect"),
    (["pub", "-t", "a", "-m", "x", "-D", "publish", "subscription-identifier", "1"],
     b"not allowed for publish"),
    (["pub", "-t", "a", "-m", "x", "-D", "publish", "message-expiry-interval", "x"], b"Invalid value"),
    (["pub", "-t", "a", "-m", "x", "-D", "publish", "user-property", "k"], b"needs a name and a value"),
    (["sub"], b"You must specify a topic"),
    (["sub", "-t", "a/#/b"], b"Invalid filter topic"),
    (["sub", "-t", "a", "-R", "--retained-only"], b"makes no sense"),
    (["sub", "-t", "a", "-W", "x"], b"Invalid timeout"),
])
def test_usage_errors(args, error):
    r = moat(*args)
    assert r.returncode == 1
    assert error in r.stderr
    assert b"Usage: moat" in r.stderr


# ---- messages, every version and QoS ----

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", QOS)
def test_moat_pub_to_mosquitto_sub(broker, procs, version, qos):
    t = topic("pub2mosq")
    sub = mosq_sub(procs, broker, "-V", version, "-q", 2, "-t", t, "-C", 1, "-F", "%q|%t|%p")
    pub(broker, "-V", version, "-q", qos, "-t", t, "-m", "hello %d" % qos)
    rc, out, err = sub.finish()
    assert rc == 0, err
    assert messages(out) == [("%d|%s|hello %d" % (qos, t, qos)).encode()]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", QOS)
def test_mosquitto_pub_to_moat_sub(broker, procs, version, qos):
    t = topic("mosq2moat")
    sub = moat_sub(procs, broker, "-V", version, "-q", 2, "-t", t, "-C", 1, "-F", "%q|%t|%p")
    mosq_pub(broker, "-V", version, "-q", qos, "-t", t, "-m", "hi %d" % qos)
    rc, out, err = sub.finish()
    assert rc == 0, err
    assert messages(out) == [("%d|%s|hi %d" % (qos, t, qos)).encode()]
    assert err == b""


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", QOS)
def test_moat_pub_to_moat_sub(broker, procs, version, qos):
    t = topic("moat2moat")
    sub = moat_sub(procs, broker, "-V", version, "-q", qos, "-t", t, "-C", 2, "-v")
    pub(broker, "-V", version, "-q", qos, "-t", t, "-m", "first")
    pub(broker, "-V", version, "-q", qos, "-t", t, "-m", "second")
    rc, out, err = sub.finish()
    assert rc == 0, err
    assert messages(out) == [t.encode() + b" first", t.encode() + b" second"]
    # QoS 2 received: PUBREC answered, and PUBREL completed before DISCONNECT
    if qos == 2:
        assert b"sending PUBREC" in out and b"sending PUBCOMP" in out


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", QOS)
def test_debug_output_matches_mosquitto_pub(broker, version, qos):
    t = topic("debug")
    args = ["-d", "-V", version, "-i", "dbg-client", "-q", qos, "-t", t, "-m", "hello"]
    ours = pub(broker, *args).stdout
    theirs = mosq_pub(broker, *args).stdout
    if qos == 0:  # libmosquitto numbers QoS 0 messages too; the wire has no identifier
        theirs = theirs.replace(b"q0, r0, m1,", b"q0, r0, m0,")
    assert ours == theirs


def test_debug_never_prints_the_password(broker):
    r = pub(broker, "-d", "-u", "someone", "-P", "hunter2-secret", "-q", 1,
            "-t", topic("pw"), "-m", "x")
    assert b"sending CONNECT" in r.stdout
    assert b"hunter2-secret" not in r.stdout + r.stderr


# ---- retained messages ----

@pytest.mark.parametrize("version", VERSIONS)
def test_retained(broker, version):
    t = topic("retained")
    pub(broker, "-V", version, "-q", 1, "-r", "-t", t, "-m", "kept")
    r = moat("sub", "-h", HOST, "-p", broker, "-V", version, "-t", t, "-C", 1, "-F", "%r %p")
    assert r.returncode == 0 and r.stdout == b"1 kept\n"
    r = run(["mosquitto_sub", "-h", HOST, "-p", str(broker), "-t", t, "-C", "1", "-F", "%r %p"])
    assert r.stdout == b"1 kept\n"
    pub(broker, "-r", "-n", "-t", t)  # an empty retained message clears it
    r = moat("sub", "-h", HOST, "-p", broker, "-t", t, "-W", 1)
    assert r.returncode == 27 and r.stdout == b""


def test_no_retain_flag(broker, procs):
    t = topic("R")
    pub(broker, "-r", "-t", t, "-m", "stale")
    sub = moat_sub(procs, broker, "-t", t, "-R", "-C", 1)
    pub(broker, "-t", t, "-m", "fresh")
    rc, out, err = sub.finish()
    assert rc == 0 and messages(out) == [b"fresh"]
    pub(broker, "-r", "-n", "-t", t)


def test_retained_only(broker):
    base = topic("ro")
    pub(broker, "-r", "-t", base + "/a", "-m", "A")
    pub(broker, "-r", "-t", base + "/b", "-m", "B")
    sub = Proc([MOAT, "sub", "-h", HOST, "-p", broker, "--retained-only", "-t", base + "/#",
                "-v"])
    try:
        sub.wait_for(base.encode() + b"/b B")
        time.sleep(0.2)
        assert sub.p.poll() is None  # still waiting: no fresh message yet
        pub(broker, "-t", base + "/c", "-m", "fresh")
        rc, out, err = sub.finish()
    finally:
        sub.kill()
    assert rc == 0
    assert sorted(out.split(b"\n")[:-1]) == [base.encode() + b"/a A", base.encode() + b"/b B"]
    pub(broker, "-r", "-n", "-t", base + "/a")
    pub(broker, "-r", "-n", "-t", base + "/b")


# ---- message sources of moat pub ----

def test_lines_from_stdin(broker, procs):
    t = topic("lines")
    sub = mosq_sub(procs, broker, "-t", t, "-C", 5, "-v", "-q", 1)
    pub(broker, "-t", t, "-l", "-q", 1, input=b"one\ntwo\n\nfour\nlast")
    rc, out, err = sub.finish()
    assert rc == 0
    tb = t.encode()
    assert messages(out) == [tb + b" one", tb + b" two", tb + b" (null)", tb + b" four",
                             tb + b" last"]


def test_lines_published_as_they_arrive(broker, procs):
    t = topic("linesLive")
    sub = moat_sub(procs, broker, "-t", t, "-v")
    p = subprocess.Popen([str(MOAT), "pub", "-h", HOST, "-p", str(broker), "-t", t, "-l",
                          "-q", "1"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"early\n")
        p.stdin.flush()
        sub.wait_for(t.encode() + b" early\n")  # while stdin is still open
        p.stdin.write(b"late\n")
        p.stdin.flush()
        sub.wait_for(t.encode() + b" late\n")
        p.send_signal(signal.SIGINT)  # how an interactive -l ends
        assert p.wait(TIMEOUT) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
        p.stdin.close()
        p.stderr.close()


def test_file_message(broker, procs, tmp_path):
    t = topic("file")
    data = bytes(range(256)) + b"\x00end\n"
    f = tmp_path / "payload.bin"
    f.write_bytes(data)
    sub = moat_sub(procs, broker, "-t", t, "-C", 1, "-F", "%l %x")
    pub(broker, "-t", t, "-f", f)
    rc, out, err = sub.finish()
    assert rc == 0
    assert messages(out) == [b"%d %s" % (len(data), data.hex().encode())]
    r = moat("pub", "-h", HOST, "-p", broker, "-t", t, "-f", tmp_path / "missing")
    assert r.returncode == 1 and b"Unable to read file" in r.stderr


def test_null_message(broker, procs):
    t = topic("null")
    sub = mosq_sub(procs, broker, "-t", t, "-C", 1, "-v")
    pub(broker, "-t", t, "-n")
    rc, out, err = sub.finish()
    assert messages(out) == [t.encode() + b" (null)"]


def test_whole_stdin_and_repeat(broker, procs):
    t = topic("stdin")
    sub = moat_sub(procs, broker, "-t", t, "-C", 3, "-F", "%p|")
    pub(broker, "-t", t, "-s", "-q", 2, "--repeat", 3, "--repeat-delay", "0.1",
        input=b"all\nof it")
    rc, out, err = sub.finish()
    assert rc == 0
    assert b"".join(messages(out)) == b"all" + b"of it|" + b"all" + b"of it|" + b"all" + b"of it|"


# ---- moat sub's options ----

def test_count_and_verbose(broker, procs):
    t = topic("count")
    sub = moat_sub(procs, broker, "-t", t + "/#", "-C", 3, "-v")
    for i in range(5):
        pub(broker, "-t", "%s/%d" % (t, i), "-m", "m%d" % i)
    rc, out, err = sub.finish()
    assert rc == 0
    assert messages(out) == [b"%s/%d m%d" % (t.encode(), i, i) for i in range(3)]


def test_timeout_exit_code(broker):
    start = time.monotonic()
    r = moat("sub", "-h", HOST, "-p", broker, "-t", topic("quiet"), "-W", 1)
    assert r.returncode == 27
    assert b"Timed out" in r.stderr
    assert 0.9 <= time.monotonic() - start < 5
    r = moat("sub", "-h", HOST, "-p", broker, "-t", topic("quiet"), "-W", 1, "--quiet")
    assert r.returncode == 27 and r.stderr == b""


def test_no_eol(broker):
    t = topic("N")
    pub(broker, "-r", "-t", t, "-m", "abc")
    r = moat("sub", "-h", HOST, "-p", broker, "-t", t, "-C", 1, "-N")
    assert r.stdout == b"abc"
    r = moat("sub", "-h", HOST, "-p", broker, "-t", t, "-C", 1, "-N", "-v")
    assert r.stdout == t.encode() + b" abc"
    pub(broker, "-r", "-n", "-t", t)


def test_format(broker, procs):
    t = topic("F")
    fmt = r"%t|%p|%q|%r|%l|%m|%%|%x|%X|%-4p|%6p|%06l|%.2p|\t|\\|@@"
    sub = moat_sub(procs, broker, "-t", t, "-q", 1, "-C", 1, "-F", fmt)
    mosq_pub(broker, "-t", t, "-q", 1, "-m", "hi")
    rc, out, err = sub.finish()
    assert rc == 0
    line = b"%s|hi|1|0|2|1|%%|6869|6869|hi  |    hi|000002|hi|\t|\\|@" % t.encode()
    assert messages(out) == [line]


def test_format_time_and_json(broker):
    t = topic("Fj")
    pub(broker, "-r", "-t", t, "-m", 'say "hi"')
    r = moat("sub", "-h", HOST, "-p", broker, "-t", t, "-C", 1, "-F", "@Y|%U|%j")
    year, unix, js = r.stdout.rstrip(b"\n").split(b"|", 2)
    assert int(year) == time.localtime().tm_year
    assert abs(float(unix) - time.time()) < 60
    assert js.startswith(b'{"tst":"')
    assert b'"topic":"%s","qos":0,"retain":1,"payloadlen":8,' % t.encode() in js
    assert js.endswith(b'"payload":"say \\u0022hi\\u0022"}')
    pub(broker, "-r", "-n", "-t", t)


def test_filter_out(broker, procs):
    t = topic("T")
    sub = moat_sub(procs, broker, "-t", t + "/#", "-T", t + "/skip/#", "-C", 1, "-v")
    pub(broker, "-t", t + "/skip/x", "-m", "no")
    pub(broker, "-t", t + "/keep", "-m", "yes")
    rc, out, err = sub.finish()
    assert messages(out) == [t.encode() + b"/keep yes"]


def test_exit_after_subscribe(broker):
    r = moat("sub", "-h", HOST, "-p", broker, "-t", topic("E"), "-E", "-d", timeout=5)
    assert r.returncode == 0
    assert b"Subscribed (mid: 1): 0" in r.stdout and b"sending DISCONNECT" in r.stdout


@pytest.mark.parametrize("version", ["311", "5"])
def test_persistent_session_and_unsubscribe(broker, version):
    t = topic("U")
    cid = "moat-test-U-%s-%d" % (version, os.getpid())
    base = ["sub", "-h", HOST, "-p", broker, "-V", version, "-c", "-i", cid, "-q", 1]
    if version == "5":
        base += ["-x", 60]
    assert moat(*base, "-t", t, "-E").returncode == 0
    pub(broker, "-t", t, "-q", 1, "-m", "queued")
    r = moat(*base, "-t", t + "/other", "-C", 1, "-W", 5)
    assert r.returncode == 0 and r.stdout == b"queued\n"
    r = moat(*base, "-U", t, "-d")
    assert r.returncode == 0 and b"received UNSUBACK" in r.stdout
    pub(broker, "-t", t, "-q", 1, "-m", "lost")
    r = moat(*base, "-t", t + "/other", "-W", 1)
    assert r.returncode == 27 and r.stdout == b""
    clean = ["sub", "-h", HOST, "-p", broker, "-V", version, "-i", cid, "-t", t, "-E"]
    assert moat(*clean).returncode == 0  # a clean session ends the stored one


def test_keepalive(broker):
    r = moat("sub", "-h", HOST, "-p", broker, "-t", topic("k"), "-k", 1, "-W", 3, "-d")
    assert r.returncode == 27
    assert r.stdout.count(b"sending PINGREQ") >= 1
    assert r.stdout.count(b"received PINGRESP") >= 1


def test_id_prefix(broker):
    r = moat("sub", "-h", HOST, "-p", broker, "-t", topic("I"), "-I", "pfx-", "-E", "-d")
    assert r.returncode == 0
    assert b"Client pfx-" in r.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_disconnects_cleanly(broker, procs, sig):
    wt = topic("sigwill")
    watcher = mosq_sub(procs, broker, "-t", wt, "-v")
    sub = moat_sub(procs, broker, "-t", topic("sig"), "--will-topic", wt,
                   "--will-payload", "should-not-appear")
    sub.p.send_signal(sig)
    rc, out, err = sub.finish()
    assert rc == 0, err
    assert out.rstrip().endswith(b"sending DISCONNECT")
    time.sleep(0.5)
    watcher.kill()
    assert b"should-not-appear" not in bytes(watcher.out)


# ---- the will ----

@pytest.mark.parametrize("version", VERSIONS)
def test_will_after_kill(broker, procs, version):
    wt = topic("will")
    watcher = mosq_sub(procs, broker, "-V", version, "-q", 1, "-t", wt, "-C", 1,
                       "-F", "%t|%p|%q|%r")
    victim = moat_sub(procs, broker, "-V", version, "-t", topic("victim"), "--will-topic", wt,
                      "--will-payload", "gone %s" % version, "--will-qos", 1)
    victim.p.kill()
    rc, out, err = watcher.finish()
    assert rc == 0
    assert messages(out) == [("%s|gone %s|1|0" % (wt, version)).encode()]


def test_will_retained(broker, procs):
    wt = topic("willr")
    victim = moat_sub(procs, broker, "-t", topic("victim"), "--will-topic", wt,
                      "--will-payload", "last words", "--will-retain")
    victim.p.kill()
    victim.p.wait(5)
    r = run(["mosquitto_sub", "-h", HOST, "-p", str(broker), "-t", wt, "-C", "1", "-W", "5",
             "-F", "%r %p"])
    assert r.stdout == b"1 last words\n"
    pub(broker, "-r", "-n", "-t", wt)


# ---- MQTT 5.0 properties ----

@pytest.fixture
def paho_sub(broker):
    """A paho v5 subscriber: call it with a topic; returns the queue of messages."""
    if paho is None:
        pytest.skip("python3-paho-mqtt not installed")
    clients = []

    def subscribe(t):
        msgs = queue.Queue()
        ready = threading.Event()
        c = paho.Client(client_id="moat-test-paho-%d-%d" % (os.getpid(), len(clients)),
                        protocol=paho.MQTTv5)
        c.on_message = lambda cl, ud, m: msgs.put(m)
        c.on_subscribe = lambda *a: ready.set()
        c.connect(HOST, broker, keepalive=30)
        c.loop_start()
        clients.append(c)
        c.subscribe(t, qos=2)
        assert ready.wait(TIMEOUT)
        return msgs

    yield subscribe
    for c in clients:
        c.disconnect()
        c.loop_stop()


def test_v5_properties_reach_paho(broker, paho_sub):
    t = topic("props")
    msgs = paho_sub(t)
    pub(broker, "-V", 5, "-q", 1, "-t", t, "-m", "with props",
        "-D", "publish", "user-property", "k1", "v1",
        "-D", "publish", "user-property", "k2", "v2",
        "-D", "publish", "content-type", "text/plain",
        "-D", "publish", "message-expiry-interval", 60,
        "-D", "publish", "response-topic", "reply/here",
        "-D", "publish", "correlation-data", "abc123",
        "-D", "publish", "payload-format-indicator", 1,
        "-D", "connect", "session-expiry-interval", 30,
        "-D", "connect", "receive-maximum", 10,
        "-D", "connect", "maximum-packet-size", 100000,
        "-D", "connect", "topic-alias-maximum", 5,
        "-D", "connect", "user-property", "ck", "cv",
        "-D", "disconnect", "session-expiry-interval", 0)
    m = msgs.get(timeout=TIMEOUT)
    assert m.payload == b"with props"
    p = m.properties
    assert p.UserProperty == [("k1", "v1"), ("k2", "v2")]
    assert p.ContentType == "text/plain"
    assert 55 <= p.MessageExpiryInterval <= 60
    assert p.ResponseTopic == "reply/here"
    assert p.CorrelationData == b"abc123"
    assert p.PayloadFormatIndicator == 1


def test_v5_will_properties_reach_paho(broker, procs, paho_sub):
    wt = topic("willprops")
    msgs = paho_sub(wt)
    victim = moat_sub(procs, broker, "-V", 5, "-t", topic("victim"), "--will-topic", wt,
                      "--will-payload", "bye", "-D", "will", "user-property", "wk", "wv",
                      "-D", "will", "content-type", "text/bye")
    victim.p.kill()
    m = msgs.get(timeout=TIMEOUT)
    assert m.payload == b"bye"
    assert m.properties.UserProperty == [("wk", "wv")]
    assert m.properties.ContentType == "text/bye"


def test_v5_properties_printed_by_moat_sub(broker, procs):
    t = topic("propsF")
    sub = moat_sub(procs, broker, "-V", 5, "-t", t, "-C", 1, "-F", "%C|%E|%R|%D|%P|%F|%A|%p")
    mosq_pub(broker, "-V", 5, "-t", t, "-m", "body",
             "-D", "publish", "content-type", "a/b",
             "-D", "publish", "message-expiry-interval", 100,
             "-D", "publish", "response-topic", "r/t",
             "-D", "publish", "correlation-data", "cd",
             "-D", "publish", "user-property", "u1", "x1",
             "-D", "publish", "user-property", "u2", "x2",
             "-D", "publish", "payload-format-indicator", 1)
    rc, out, err = sub.finish()
    assert rc == 0
    c, e, rest = messages(out)[0].split(b"|", 2)
    assert c == b"a/b" and 95 <= int(e) <= 100
    assert rest == b"r/t|cd|u1:x1 u2:x2|1||body"


def test_v5_properties_ignored_before_v5(broker, procs):
    t = topic("props3")
    sub = moat_sub(procs, broker, "-t", t, "-C", 1)
    pub(broker, "-V", 311, "-t", t, "-m", "plain", "-D", "publish", "content-type", "x/y")
    rc, out, err = sub.finish()
    assert messages(out) == [b"plain"]


# ---- refusals ----

@pytest.mark.parametrize("version,code,name", [
    ("31", 5, b"Connection Refused, not authorized"),
    ("311", 5, b"Connection Refused, not authorized"),
    ("5", 135, b"Not authorized"),
])
def test_refusal_exit_codes(auth_broker, version, code, name):
    for tool in ("pub", "sub"):
        args = [tool, "-h", HOST, "-p", auth_broker, "-V", version, "-t", "a",
                "-u", "alice", "-P", "wrong"]
        if tool == "pub":
            args += ["-m", "x"]
        r = moat(*args)
        assert r.returncode == code, r.stderr
        assert b"Connection error: " + name in r.stderr
        theirs = run(["mosquitto_" + tool] + [str(a) for a in args[1:]])
        assert theirs.returncode == code  # the same as mosquitto's own clients
    r = moat("pub", "-h", HOST, "-p", auth_broker, "-V", version, "-t", "a", "-m", "x",
             "-u", "alice", "-P", "s3cret")
    assert r.returncode == 0, r.stderr


def test_anonymous_refused(auth_broker):
    r = moat("sub", "-h", HOST, "-p", auth_broker, "-V", 5, "-t", "a")
    assert r.returncode == 135


def test_connection_refused():
    port = free_port()  # nothing listens there
    r = moat("pub", "-h", HOST, "-p", port, "-t", "a", "-m", "x")
    assert r.returncode == 1 and b"Error: Connection refused" in r.stderr
    r = moat("sub", "-h", HOST, "-p", port, "-t", "a", "--quiet")
    assert r.returncode == 1 and r.stderr == b""


# ---- limits a server announces in CONNACK ----

def test_server_receive_maximum(limits_broker, procs):
    t = topic("rm")
    sub = moat_sub(procs, limits_broker, "-V", 5, "-t", t, "-q", 1, "-C", 8)
    r = pub(limits_broker, "-V", 5, "-q", 1, "-t", t, "-l", "-d",
            input=b"".join(b"%d\n" % i for i in range(8)))
    inflight = peak = 0
    for line in r.stdout.split(b"\n"):
        if b"sending PUBLISH" in line:
            inflight += 1
            peak = max(peak, inflight)
        elif b"received PUBACK" in line:
            inflight -= 1
    assert peak == 2 and inflight == 0  # mosquitto's max_inflight_messages 2
    rc, out, err = sub.finish()
    assert messages(out) == [b"%d" % i for i in range(8)]


def test_server_limits_refused_locally(limits_broker):
    base = ["pub", "-h", HOST, "-p", limits_broker, "-V", 5, "-t", topic("lim")]
    r = moat(*base, "-m", "x" * 300)
    assert r.returncode == 1 and b"Maximum Packet Size (200)" in r.stderr
    r = moat(*base, "-m", "x", "-q", 2)
    assert r.returncode == 1 and b"Maximum QoS (1)" in r.stderr
    r = moat(*base, "-m", "x", "-r")
    assert r.returncode == 1 and b"does not support retained" in r.stderr
    r = moat(*base, "-m", "x", "-D", "publish", "topic-alias", 4)
    assert r.returncode == 1 and b"Topic Alias Maximum (3)" in r.stderr


def test_topic_alias_to_server(limits_broker, procs):
    t = topic("alias")
    sub = moat_sub(procs, limits_broker, "-t", t, "-C", 3, "-v")
    r = pub(limits_broker, "-V", 5, "-t", t, "-d", "-l", "-D", "publish", "topic-alias", 1,
            input=b"a\nb\nc\n")
    sent = [l for l in r.stdout.split(b"\n") if b"sending PUBLISH" in l]
    assert b"'%s'" % t.encode() in sent[0]
    assert all(b"''" in l for l in sent[1:])  # the alias stands for the topic
    rc, out, err = sub.finish()
    assert messages(out) == [t.encode() + b" a", t.encode() + b" b", t.encode() + b" c"]


# ---- a scripted server, for what mosquitto never sends ----

def _read_packet(conn):
    head = conn.recv(1)
    if not head:
        return None, b""
    length, mult = 0, 1
    while True:
        b = conn.recv(1)[0]
        length += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    body = b""
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            break
        body += chunk
    return head[0], body


def _publish_v5(topic_name, alias, payload):
    props = b"\x23" + struct.pack(">H", alias)
    body = struct.pack(">H", len(topic_name)) + topic_name + bytes([len(props)]) + props + payload
    return bytes([0x30, len(body)]) + body


def _fake_server(publishes):
    """Listens once; answers CONNECT and SUBSCRIBE, sends publishes, records packets."""
    srv = socket.socket()
    srv.bind((HOST, 0))
    srv.listen(1)
    srv.settimeout(TIMEOUT)
    seen = []

    def serve():
        try:
            conn, _ = srv.accept()
            conn.settimeout(TIMEOUT)
            with conn:
                seen.append(_read_packet(conn))                        # CONNECT
                conn.sendall(b"\x20\x03\x00\x00\x00")                  # CONNACK
                h, body = _read_packet(conn)                           # SUBSCRIBE
                seen.append((h, body))
                conn.sendall(b"\x90\x04" + body[:2] + b"\x00\x00")     # SUBACK
                for p in publishes:
                    conn.sendall(p)
                while True:
                    h, body = _read_packet(conn)
                    if h is None:
                        break
                    seen.append((h, body))
        except OSError:
            pass
        finally:
            srv.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    return srv.getsockname()[1], th, seen


def test_topic_alias_from_server():
    port, th, seen = _fake_server([
        _publish_v5(b"al/x", 1, b"first"),
        _publish_v5(b"", 1, b"second"),
        _publish_v5(b"al/y", 2, b"third"),
        _publish_v5(b"", 1, b"fourth"),
    ])
    r = moat("sub", "-h", HOST, "-p", port, "-V", 5, "-t", "al/#", "-C", 4, "-v",
             "-D", "connect", "topic-alias-maximum", 2)
    th.join(TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"al/x first\nal/x second\nal/y third\nal/x fourth\n"
    assert seen[-1] == (0xE0, b"")  # a normal DISCONNECT


@pytest.mark.parametrize("publishes,reason", [
    ([_publish_v5(b"al/x", 3, b"over")], 0x94),   # above our Topic Alias Maximum
    ([_publish_v5(b"", 1, b"unknown")], 0x82),    # an alias never mapped
])
def test_bad_topic_alias_from_server(publishes, reason):
    port, th, seen = _fake_server(publishes)
    r = moat("sub", "-h", HOST, "-p", port, "-V", 5, "-t", "al/#", "-W", 5,
             "-D", "connect", "topic-alias-maximum", 2)
    th.join(TIMEOUT)
    assert r.returncode == 1
    assert b"server broke the protocol" in r.stderr
    assert seen[-1][0] == 0xE0 and seen[-1][1][:1] == bytes([reason])
