"""moat pub / moat sub over TLS, mutual TLS, TLS-PSK, WebSockets and WebSockets over TLS.

A test PKI is made with the openssl command (module fixture ``pki``): a CA, a server
certificate for localhost / 127.0.0.1, one for wrong.example only, a client certificate, and
an unrelated CA. The brokers:

- Debian's /usr/sbin/mosquitto (skipped if absent) with a listener of each kind on 127.0.0.1:
  TLS, mutual TLS, TLS with the wrong.example certificate, TLS 1.3 only, TLS-PSK, WebSockets
  and WebSockets over TLS;
- moatd itself with a TLS and a mutual-TLS listener (``certfile``/``keyfile``/``cafile``/
  ``require_certificate``), and a WebSocket listener when moatd accepts one.

What is checked: messages both ways over every kind; the option checks and their messages
(mosquitto_pub/sub's); the default ports (1883, 8883 with TLS, 8080 with -w, 8081 with -w and
TLS) when they are free to listen on; failures - a wrong CA, a wrong host name (and --insecure
getting past it), a missing client certificate, a wrong PSK, an unreadable --cafile - end with
a clear "Error: ..." and exit code 1; a server that never answers the TLS handshake ends in the
timeout without spinning; SIGINT ends a TLS subscriber cleanly.

Every process is bounded by a timeout and killed at the end of its test.
"""

import os
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from moatlib import Broker, free_port

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MOAT_BUILD", REPO / "build"))
MOAT = BUILD / "moat"
MOSQUITTO = "/usr/sbin/mosquitto"
HOST = "127.0.0.1"
TIMEOUT = 15  # seconds any one process may take
OPENSSL = shutil.which("openssl")

if OPENSSL is None:
    pytest.skip("the openssl command is needed to make the test PKI", allow_module_level=True)

needs_mosquitto = pytest.mark.skipif(not os.path.exists(MOSQUITTO),
                                     reason="Mosquitto broker not installed (%s)" % MOSQUITTO)


# ---- processes ----

def moat(*args, timeout=TIMEOUT, input=None):
    """Runs moat to completion; returns the CompletedProcess (bytes)."""
    return subprocess.run([str(MOAT)] + [str(a) for a in args], input=input,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


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
        for chunk in iter(lambda: self.p.stdout.read1(65536), b""):
            with self.lock:
                self.out += chunk

    def wait_for(self, needle, timeout=TIMEOUT):
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
                            % (self.p.returncode, needle, bytes(self.out)[-300:],
                               self.p.stderr.read()))
            time.sleep(0.02)
        pytest.fail("no %r within %ss: stdout %r" % (needle, timeout, bytes(self.out)[-300:]))

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


@pytest.fixture(scope="module", autouse=True)
def moat_binary():
    if not MOAT.exists():
        pytest.fail("%s not found: build it, or set MOAT_BUILD to its directory" % MOAT)


# ---- the test PKI ----

class CertMaker:
    """Keys and certificates in directory d, made with the openssl command."""

    def __init__(self, d):
        self.d = d

    def ssl(self, *args):
        r = subprocess.run([OPENSSL] + [str(a) for a in args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        assert r.returncode == 0, r.stderr

    def key(self, name):
        path = self.d / (name + ".key")
        self.ssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", path)
        return path

    def root(self, name, cn):
        """A self-signed CA; returns its certificate's path."""
        key = self.key(name)
        crt = self.d / (name + ".crt")
        self.ssl("req", "-x509", "-new", "-key", key, "-out", crt, "-days", "2", "-subj",
                 "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return crt

    def leaf(self, name, cn, ca, ext):
        """A certificate issued by root ca with extensions ext; returns (cert, key) paths."""
        key = self.key(name)
        csr, crt, extfile = (self.d / (name + s) for s in (".csr", ".crt", ".ext"))
        extfile.write_text(ext)
        self.ssl("req", "-new", "-key", key, "-out", csr, "-subj", "/CN=" + cn)
        self.ssl("x509", "-req", "-in", csr, "-CA", self.d / (ca + ".crt"),
                 "-CAkey", self.d / (ca + ".key"), "-CAcreateserial", "-out", crt,
                 "-days", "2", "-extfile", extfile)
        return crt, key


class PKI(CertMaker):
    def __init__(self, d):
        super().__init__(d)
        self.ca = self.root("ca", "moat test CA")
        self.other_ca = self.root("other-ca", "another CA")
        self.server = self.leaf("server", "localhost", "ca",
                                "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                "extendedKeyUsage=serverAuth\n")
        self.wrong = self.leaf("wrong", "wrong.example", "ca",
                               "subjectAltName=DNS:wrong.example\nextendedKeyUsage=serverAuth\n")
        self.client = self.leaf("client", "moat-client", "ca", "extendedKeyUsage=clientAuth\n")
        self.psk_file = d / "psk"
        self.psk_file.write_text("alice:deadbeef0123456789\n")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


def tls(pki, cert=False):
    """The options of a client trusting the test CA (with the client certificate)."""
    args = ["--cafile", pki.ca]
    if cert:
        args += ["--cert", pki.client[0], "--key", pki.client[1]]
    return args


def psk():
    return ["--psk", "deadbeef0123456789", "--psk-identity", "alice"]


# ---- brokers ----

def wait_listening(ports, proc, log, what):
    end = time.monotonic() + 10
    for port in ports:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("%s exited: %s" % (what, log.read_text()))
            try:
                socket.create_connection((HOST, port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > end:
                    raise RuntimeError("%s did not listen on %d: %s" % (what, port,
                                                                       log.read_text()))
                time.sleep(0.05)


class Mosquitto:
    KINDS = ("tls", "mtls", "wrong", "tls13", "psk", "ws", "wss")

    def __init__(self, d, pki):
        self.port = {k: free_port() for k in self.KINDS}
        ca = "cafile %s\n" % pki.ca
        server = "certfile %s\nkeyfile %s\n" % pki.server
        conf = ["per_listener_settings false", "allow_anonymous true",
                "psk_file %s" % pki.psk_file]
        if os.geteuid() == 0:
            conf.append("user root")
        listeners = {
            "tls": ca + server,
            "mtls": ca + server + "require_certificate true\n",
            "wrong": ca + "certfile %s\nkeyfile %s\n" % pki.wrong,
            "tls13": ca + server + "tls_version tlsv1.3\n",
            "psk": "psk_hint moat-test\n",
            "ws": "protocol websockets\n",
            "wss": "protocol websockets\n" + ca + server,
        }
        text = "\n".join(conf) + "\n"
        for kind in self.KINDS:
            text += "listener %d %s\n%s" % (self.port[kind], HOST, listeners[kind])
        (d / "mosquitto.conf").write_text(text)
        self.log_path = d / "mosquitto.log"
        self.log = open(self.log_path, "wb")
        self.p = subprocess.Popen([MOSQUITTO, "-c", str(d / "mosquitto.conf")],
                                  stdin=subprocess.DEVNULL, stdout=self.log,
                                  stderr=subprocess.STDOUT)
        try:
            wait_listening(self.port.values(), self.p, self.log_path, "mosquitto")
        except Exception:
            self.stop()
            raise

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.log.close()


@pytest.fixture(scope="module")
def mosq(tmp_path_factory, pki):
    if not os.path.exists(MOSQUITTO):
        pytest.skip("Mosquitto broker not installed (%s)" % MOSQUITTO)
    m = Mosquitto(tmp_path_factory.mktemp("mosq"), pki)
    yield m.port
    m.stop()


def moatd_conf(pki, tls_port, mtls_port, ws_port=None):
    server = "certfile %s\nkeyfile %s\n" % pki.server
    text = ("listener %d 127.0.0.1\nallow_anonymous true\n%s"
            "listener %d 127.0.0.1\nallow_anonymous true\n%scafile %s\nrequire_certificate true\n"
            % (tls_port, server, mtls_port, server, pki.ca))
    if ws_port:
        text += "listener %d 127.0.0.1\nallow_anonymous true\nprotocol websockets\n" % ws_port
    return text


@pytest.fixture(scope="module")
def moatd(pki):
    ports = {"tls": free_port(), "mtls": free_port()}
    b = Broker(moatd_conf(pki, ports["tls"], ports["mtls"]))
    try:
        wait_listening(ports.values(), b.proc, Path(b.log_path), "moatd")
    except Exception:
        b.stop()
        raise
    yield ports
    rc = b.stop()
    b.check_clean()
    assert rc == 0, "moatd exited with %r:\n%s" % (rc, b.output()[-4000:])


_topic_n = [0]


def topic(name):
    _topic_n[0] += 1
    return "moat-tls-test/%d/%s/%d" % (os.getpid(), name, _topic_n[0])


def start_sub(procs, port, *args):
    """Starts `moat sub -d` and waits until its subscription is acknowledged."""
    pr = procs(MOAT, "sub", "-p", port, "-d", *args)
    pr.wait_for(b"Subscribed (mid")
    return pr


def messages(out):
    return [l for l in out.split(b"\n")
            if l and not l.startswith((b"Client ", b"Subscribed (mid"))]


def roundtrip(procs, sub_port, sub_args, pub_port, pub_args, qos=1, host="localhost",
              payloads=(b"hello",)):
    """moat sub on one side, moat pub on the other: every payload arrives, in order."""
    t = topic("rt")
    sub = start_sub(procs, sub_port, "-h", host, "-t", t, "-q", qos, "-C", len(payloads),
                    *sub_args)
    for p in payloads:
        r = moat("pub", "-h", host, "-p", pub_port, "-t", t, "-q", qos, "-s", *pub_args,
                 input=p)
        assert r.returncode == 0, r.stderr
        assert r.stderr == b""
    rc, out, err = sub.finish()
    assert rc == 0, err
    assert messages(out) == list(payloads)


# ---- options, without a broker ----

def test_usage_lists_the_tls_and_websocket_options():
    for cmd in ("pub", "sub"):
        r = moat(cmd, "--help")
        assert r.returncode == 0
        for opt in (b"--cafile", b"--capath", b"--cert", b"--key", b"--insecure",
                    b"--tls-version", b"--psk", b"--psk-identity", b"--ciphers", b" -w "):
            assert opt in r.stdout, (cmd, opt)
        assert b"8883" in r.stdout and b"8080" in r.stdout


@pytest.mark.parametrize("args,error", [
    (["--cert", "c.pem"], b"Both certfile and keyfile must be provided if one of them is set"),
    (["--key", "k.pem"], b"Both certfile and keyfile must be provided if one of them is set"),
    (["--psk", "abcd"], b"--psk-identity required if --psk used"),
    (["--psk", "abcd", "--psk-identity", "i", "--cafile", "ca.pem"],
     b"Only one of --psk or --cafile/--capath may be used at once"),
    (["--psk", "abcd", "--psk-identity", "i", "--cert", "c", "--key", "k"],
     b"Only one of --psk or --cert/--key may be used at once"),
    (["--psk", "0xabcd", "--psk-identity", "i"], b"--psk must be a key in hexadecimal"),
    (["--psk", "abc", "--psk-identity", "i"], b"--psk must be a key in hexadecimal"),
    (["--tls-version", "tlsv1.1"], b"Invalid --tls-version 'tlsv1.1'"),
    (["--cafile"], b"--cafile argument given but no file specified"),
    (["--psk-identity"], b"--psk-identity argument given but no identity specified"),
])
@pytest.mark.parametrize("cmd", ["pub", "sub"])
def test_option_errors(cmd, args, error):
    r = moat(cmd, "-t", "a", *(["-m", "x"] if cmd == "pub" else []), *args)
    assert r.returncode == 1
    assert error in r.stderr
    assert b"Usage: moat " + cmd.encode() in r.stderr


def test_unreadable_cafile_is_named(pki):
    r = moat("pub", "-h", HOST, "-p", free_port(), "--cafile", pki.d / "nope.pem", "-t", "a",
             "-m", "x")
    assert r.returncode == 1
    assert b"Error: --cafile '" in r.stderr and b"No such file or directory" in r.stderr


def test_unknown_cipher_is_a_tls_error(pki):
    r = moat("pub", "-h", HOST, "-p", free_port(), "--cafile", pki.ca, "--ciphers", "NO-SUCH",
             "-t", "a", "-m", "x")
    assert r.returncode == 1
    assert r.stderr.startswith(b"Error: TLS: "), r.stderr


def test_key_not_matching_the_certificate(pki):
    r = moat("pub", "-h", HOST, "-p", free_port(), "--cafile", pki.ca, "--cert", pki.client[0],
             "--key", pki.server[1], "-t", "a", "-m", "x")
    assert r.returncode == 1
    assert r.stderr.startswith(b"Error: TLS: ") and b"mismatch" in r.stderr, r.stderr


@pytest.mark.parametrize("args,port", [
    ([], 1883),
    (["--cafile", "CA"], 8883),
    (["--psk", "abcd", "--psk-identity", "i"], 8883),
    (["-w"], 8080),
    (["--ws", "--cafile", "CA"], 8081),
    (["-p", "8884", "--cafile", "CA"], 8884),
])
def test_default_ports(pki, args, port):
    """moat connects to the port its options imply; skipped when that port is taken."""
    args = [pki.ca if a == "CA" else a for a in args]
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            pytest.skip("port %d is in use here" % port)
        s.listen(1)
        s.settimeout(TIMEOUT)
        p = subprocess.Popen([str(MOAT), "pub", "-h", HOST, "-t", "a", "-m", "x"]
                             + [str(a) for a in args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            conn, _ = s.accept()
            conn.close()
            _, err = p.communicate(timeout=TIMEOUT)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    assert p.returncode == 1 and err.startswith(b"Error: "), err


# ---- against mosquitto ----

@needs_mosquitto
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_tls(mosq, pki, procs, host, qos):
    roundtrip(procs, mosq["tls"], tls(pki), mosq["tls"], tls(pki), qos=qos, host=host)


@needs_mosquitto
@pytest.mark.parametrize("version", ["tlsv1.2", "tlsv1.3"])
def test_mosquitto_mutual_tls(mosq, pki, procs, version):
    opts = tls(pki, cert=True) + ["--tls-version", version]
    roundtrip(procs, mosq["mtls"], opts, mosq["mtls"], opts, qos=2)


@needs_mosquitto
def test_mosquitto_tls_capath(mosq, pki, procs, tmp_path):
    """--capath: a directory of CA certificates named by their subject hash."""
    r = subprocess.run([OPENSSL, "x509", "-hash", "-noout", "-in", str(pki.ca)],
                       stdout=subprocess.PIPE, timeout=30, check=True)
    shutil.copy(pki.ca, tmp_path / (r.stdout.decode().strip() + ".0"))
    roundtrip(procs, mosq["tls"], ["--capath", tmp_path], mosq["tls"], ["--capath", tmp_path])


@needs_mosquitto
def test_mosquitto_tls12_with_ciphers(mosq, pki, procs):
    opts = tls(pki) + ["--tls-version", "tlsv1.2", "--ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384"]
    roundtrip(procs, mosq["tls"], opts, mosq["tls"], opts)


@needs_mosquitto
def test_mosquitto_psk(mosq, procs):
    roundtrip(procs, mosq["psk"], psk(), mosq["psk"], psk(), qos=2)
    roundtrip(procs, mosq["psk"], psk() + ["--tls-version", "tlsv1.2"], mosq["psk"],
              psk() + ["--tls-version", "tlsv1.2"])


@needs_mosquitto
def test_mosquitto_websockets(mosq, pki, procs):
    roundtrip(procs, mosq["ws"], ["-w"], mosq["ws"], ["--ws"], qos=2,
              payloads=(b"one", b"two", b"x" * 60000))


@needs_mosquitto
def test_mosquitto_websockets_over_tls(mosq, pki, procs):
    roundtrip(procs, mosq["wss"], ["-w"] + tls(pki), mosq["wss"], ["-w"] + tls(pki), qos=2,
              payloads=(b"one", b"two", b"x" * 60000))


@needs_mosquitto
def test_mosquitto_across_listeners(mosq, pki, procs):
    """A message published over TLS-PSK reaches a WebSocket subscriber, and back over TLS."""
    roundtrip(procs, mosq["ws"], ["-w"], mosq["psk"], psk())
    roundtrip(procs, mosq["mtls"], tls(pki, cert=True), mosq["wss"], ["-w"] + tls(pki))


@needs_mosquitto
def test_mosquitto_large_messages_and_bursts_over_tls(mosq, pki, procs):
    """Large payloads cross TLS records; a burst puts many packets in one record."""
    roundtrip(procs, mosq["tls"], tls(pki), mosq["tls"], tls(pki),
              payloads=(os.urandom(300000).hex().encode(),))
    t = topic("burst")
    sub = start_sub(procs, mosq["tls"], "-h", "localhost", "-t", t, "-q", "1", "-C", "300",
                    *tls(pki))
    r = moat("pub", "-h", "localhost", "-p", mosq["tls"], "-t", t, "-q", "1", "-l", *tls(pki),
             input=b"".join(b"line %d\n" % i for i in range(300)))
    assert r.returncode == 0, r.stderr
    rc, out, err = sub.finish()
    assert rc == 0, err
    assert messages(out) == [b"line %d" % i for i in range(300)]


def refused_certificate(err):
    """The words of a client certificate refused, or missing, at the handshake.

    TLS 1.3 refuses it after the client has finished: either the client reads the alert, or
    its CONNECT meets the closed connection first and it says that, with a hint.
    """
    return err.startswith("Error: TLS: ") and (
        "alert" in err or "closed the connection after the handshake" in err)


def failure(port, *args, cmd="pub"):
    extra = ["-m", "x"] if cmd == "pub" else ["-W", "10"]
    r = moat(cmd, "-p", port, "-t", "a", *extra, *[str(a) for a in args])
    assert r.returncode == 1, (r.returncode, r.stderr)
    return r.stderr.decode()


@needs_mosquitto
@pytest.mark.parametrize("cmd", ["pub", "sub"])
def test_mosquitto_wrong_ca(mosq, pki, cmd):
    err = failure(mosq["tls"], "-h", "localhost", "--cafile", pki.other_ca, cmd=cmd)
    assert err.startswith("Error: TLS: certificate verify failed"), err


@needs_mosquitto
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_mosquitto_wrong_hostname(mosq, pki, procs, host):
    err = failure(mosq["wrong"], "-h", host, *tls(pki))
    what = "hostname" if host == "localhost" else "IP address"  # OpenSSL 3 checks IP SANs
    assert err == "Error: TLS: certificate verify failed: %s mismatch\n" % what, err
    # --insecure skips the name check only: the chain is still checked
    roundtrip(procs, mosq["wrong"], tls(pki) + ["--insecure"], mosq["wrong"],
              tls(pki) + ["--insecure"], host=host)
    err = failure(mosq["wrong"], "-h", host, "--cafile", pki.other_ca, "--insecure")
    assert err.startswith("Error: TLS: certificate verify failed"), err


@needs_mosquitto
@pytest.mark.parametrize("version", ["tlsv1.2", "tlsv1.3"])
@pytest.mark.parametrize("cmd", ["pub", "sub"])
def test_mosquitto_missing_client_certificate(mosq, pki, version, cmd):
    err = failure(mosq["mtls"], "-h", "localhost", "--tls-version", version, *tls(pki), cmd=cmd)
    assert refused_certificate(err), err


@needs_mosquitto
def test_mosquitto_tls_version_refused(mosq, pki, procs):
    err = failure(mosq["tls13"], "-h", "localhost", "--tls-version", "tlsv1.2", *tls(pki))
    assert err.startswith("Error: TLS: "), err
    roundtrip(procs, mosq["tls13"], tls(pki) + ["--tls-version", "tlsv1.3"], mosq["tls13"],
              tls(pki))


@needs_mosquitto
def test_mosquitto_wrong_psk(mosq):
    err = failure(mosq["psk"], "-h", "localhost", "--psk", "deadbeef0123456788",
                  "--psk-identity", "alice")
    assert err.startswith("Error: TLS: "), err
    err = failure(mosq["psk"], "-h", "localhost", "--psk", "deadbeef0123456789",
                  "--psk-identity", "mallory")
    assert err.startswith("Error: TLS: "), err


@needs_mosquitto
def test_mosquitto_mismatched_streams(mosq, pki):
    """Each wrong pairing of client and listener fails with exit code 1 and a reason."""
    assert failure(mosq["tls"], "-h", "localhost").startswith("Error: ")
    err = failure(mosq["ws"], "-h", "localhost", *tls(pki))
    assert err.startswith("Error: TLS: "), err
    err = failure(mosq["tls"], "-h", "localhost", "-w", *tls(pki))
    assert err.startswith("Error: WebSocket: "), err
    assert failure(mosq["wss"], "-h", "localhost", "-w").startswith("Error: ")


@needs_mosquitto
def test_sigint_ends_a_tls_subscriber(mosq, pki, procs):
    sub = start_sub(procs, mosq["tls"], "-h", "localhost", "-t", topic("int"), *tls(pki))
    sub.p.send_signal(signal.SIGINT)
    rc, _, err = sub.finish(timeout=5)
    assert rc == 0, err


# ---- a server that never answers the handshake ----

def test_silent_server_times_out_without_spinning(pki):
    """-W bounds the TLS handshake too; waiting polls for reading, it does not spin."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen(4)
        port = s.getsockname()[1]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        r = moat("sub", "-h", "localhost", "-p", port, "-t", "a", "-W", "2", *tls(pki))
        took = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert r.returncode == 27, r.stderr
    assert b"handshake" in r.stderr and b"Timed out" in r.stderr, r.stderr
    assert 1.5 < took < 10
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 1.0, "the client used %.2f s of CPU waiting %.1f s" % (cpu, took)


# ---- against moatd ----

@pytest.mark.parametrize("qos", [0, 1, 2])
def test_moatd_tls(moatd, pki, procs, qos):
    roundtrip(procs, moatd["tls"], tls(pki), moatd["tls"], tls(pki), qos=qos)
    roundtrip(procs, moatd["tls"], tls(pki), moatd["tls"], tls(pki), qos=qos, host=HOST)


@pytest.mark.parametrize("version", ["tlsv1.2", "tlsv1.3"])
def test_moatd_mutual_tls(moatd, pki, procs, version):
    opts = tls(pki, cert=True) + ["--tls-version", version]
    roundtrip(procs, moatd["mtls"], opts, moatd["tls"], tls(pki), qos=2)
    roundtrip(procs, moatd["tls"], tls(pki), moatd["mtls"], opts, qos=1,
              payloads=(b"a", os.urandom(100000).hex().encode()))


@pytest.mark.parametrize("version", ["tlsv1.2", "tlsv1.3"])
def test_moatd_missing_client_certificate(moatd, pki, version):
    err = failure(moatd["mtls"], "-h", "localhost", "--tls-version", version, *tls(pki))
    assert refused_certificate(err), err


def test_moatd_wrong_ca(moatd, pki):
    for port in (moatd["tls"], moatd["mtls"]):
        err = failure(port, "-h", "localhost", "--cafile", pki.other_ca)
        assert err.startswith("Error: TLS: certificate verify failed"), err


def test_moatd_client_certificate_from_another_ca(moatd, pki, tmp_path):
    stranger = CertMaker(tmp_path)
    stranger.root("ca", "stranger CA")
    crt, key = stranger.leaf("client", "moat-client", "ca", "extendedKeyUsage=clientAuth\n")
    err = failure(moatd["mtls"], "-h", "localhost", "--cafile", pki.ca, "--cert", crt,
                  "--key", key)
    assert refused_certificate(err), err


def test_moatd_websockets(pki, procs):
    """-w against moatd, when this moatd accepts a WebSocket listener."""
    ports = {"tls": free_port(), "mtls": free_port(), "ws": free_port()}
    try:
        b = Broker(moatd_conf(pki, ports["tls"], ports["mtls"], ports["ws"]))
    except RuntimeError as e:
        if "websockets are not supported" in str(e):
            pytest.skip("moatd has no WebSocket listener yet")
        raise
    try:
        wait_listening(ports.values(), b.proc, Path(b.log_path), "moatd")
        roundtrip(procs, ports["ws"], ["-w"], ports["tls"], tls(pki), qos=2)
        roundtrip(procs, ports["tls"], tls(pki), ports["ws"], ["-w"], qos=1)
    finally:
        rc = b.stop()
        b.check_clean()
    assert rc == 0, b.output()[-4000:]
