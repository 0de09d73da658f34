"""`moat passwd` and password files, against Debian's mosquitto_passwd and mosquitto.

Covers:
  - usage, flag conflicts and errors, with mosquitto_passwd's messages and exit codes;
  - creating (-c), adding, updating and deleting (-D) users, in batch mode (-b) and with
    the password on standard input; the other lines of the file are kept byte for byte,
    the file is mode 0600 and no temporary file is left behind;
  - every -H algorithm, each entry checked here independently of moat (libsodium through
    ctypes for Argon2id, hashlib/hmac for PBKDF2-SHA512 and SCRAM);
  - -U: plain-text passwords hashed, hashed entries and comments left alone;
  - a file made by mosquitto_passwd ($7$, and $6$ with -H sha512) is read by moatd: the right
    passwords authenticate mosquitto_pub, wrong ones and unknown users are refused;
  - a file made by `moat passwd -H sha512-pbkdf2` is accepted by Debian's mosquitto broker;
  - in the prompting mode the password never appears in `ps` output (it is read from stdin);
    on a terminal (a pty that is the controlling terminal) it is asked twice, not echoed, and
    a mismatch exits 2.
"""
import base64
import ctypes
import ctypes.util
import hashlib
import hmac
import os
import pty
import select
import shutil
import socket
import stat
import subprocess
import time

import pytest

from moatlib import MOAT, Broker

MOSQUITTO = "/usr/sbin/mosquitto"
HOST = "127.0.0.1"
TIMEOUT = 20
for tool in ("mosquitto_passwd", "mosquitto_pub"):
    if shutil.which(tool) is None:
        pytest.skip("%s not installed: apt-get install mosquitto-clients mosquitto" % tool,
                    allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def moat_binary():
    if not os.path.exists(MOAT):
        pytest.fail("%s not found: build it, or set MOAT_BUILD to its directory" % MOAT)


def moat_passwd(*args, input=None, cwd=None):
    return subprocess.run([MOAT, "passwd"] + [str(a) for a in args], input=input, cwd=cwd,
                          capture_output=True, timeout=TIMEOUT)


def entries(path):
    """user -> hash, for the user lines of a password file."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                user, h = line.split(":", 1)
                out[user.strip()] = h.strip()
    return out


# ---- independent verification ----

_sodium = None


def sodium():
    global _sodium
    if _sodium is None:
        name = ctypes.util.find_library("sodium")
        if not name:
            pytest.skip("libsodium not found")
        _sodium = ctypes.CDLL(name)
        assert _sodium.sodium_init() >= 0
    return _sodium


def b64(s):
    return base64.b64decode(s, validate=True)


def verify(h, password):
    """Does password match hash string h? Computed here, without moat."""
    pw = password.encode()
    if h.startswith("$argon2id$"):
        s = sodium()
        buf = ctypes.create_string_buffer(h.encode(), 128)
        return s.crypto_pwhash_str_verify(buf, pw, ctypes.c_ulonglong(len(pw))) == 0
    f = h.split("$")
    if f[1] == "7":
        return hashlib.pbkdf2_hmac("sha512", pw, b64(f[3]), int(f[2]), 64) == b64(f[4])
    if f[1] == "6":
        return hashlib.sha512(pw + b64(f[2])).digest() == b64(f[3])
    if f[1] in ("scram-sha-256", "scram-sha-512"):
        md = "sha256" if f[1].endswith("256") else "sha512"
        salted = hashlib.pbkdf2_hmac(md, pw, b64(f[3]), int(f[2]))
        client = hmac.new(salted, b"Client Key", md).digest()
        server = hmac.new(salted, b"Server Key", md).digest()
        return hashlib.new(md, client).digest() == b64(f[4]) and server == b64(f[5])
    raise AssertionError("unknown hash " + h)


def no_temp_files(path):
    d = os.path.dirname(path)
    assert sorted(os.listdir(d)) == sorted(n for n in os.listdir(d) if not n.startswith(".")), \
        os.listdir(d)


# ---- usage and errors ----

def test_usage():
    r = moat_passwd()
    assert r.returncode == 1
    assert b"Usage: moat passwd" in r.stdout
    r = moat_passwd("--help")
    assert r.returncode == 0
    assert b"-U : hash the plain-text passwords" in r.stdout
    r = subprocess.run([MOAT, "help"], capture_output=True, timeout=TIMEOUT)
    assert b"passwd" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["-c", "-D", "f", "u"], "Error: -c and -D cannot be used together."),
    (["-c", "-U", "f"], "Error: -c and -U cannot be used together."),
    (["-D", "-U", "f"], "Error: -D and -U cannot be used together."),
    (["-b", "-D", "f", "u"], "Error: -b and -D cannot be used together."),
    (["-H", "md5", "f", "u"], "Error: Unknown hash type 'md5'"),
    (["-H"], "Error: -H argument given but not enough other arguments."),
    (["-H", "sha512", "f", "u"], "Error: Hash type 'sha512' ($6$) is too weak"),
    (["-D", "f"], "Error: -D argument given but password file or username missing."),
    (["-c", "f"], "Error: -c argument given but password file or username missing."),
    (["-c", "-b", "f", "u"],
     "Error: -c argument given but password file, username, or password missing."),
    (["-U"], "Error: -U argument given but password file missing."),
    (["-b", "f", "a:b", "pw"], "Error: Username must not contain the ':' character."),
    (["-b", "f", "a\tb", "pw"], "Error: Username must not contain control characters."),
    (["-x", "f", "u"], "Error: Unknown option '-x'."),
])
def test_usage_errors(tmp_path, args, message):
    r = moat_passwd(*args, cwd=tmp_path)
    assert r.returncode == 1, r
    assert message.encode() in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "f")


def test_missing_file(tmp_path):
    f = tmp_path / "none"
    r = moat_passwd("-b", f, "alice", "pw")
    assert r.returncode == 1
    assert ("Error: Unable to open password file %s. No such file or directory." % f).encode() \
        in r.stderr
    r = moat_passwd("-D", f, "alice")
    assert r.returncode == 1
    assert not f.exists()


# ---- editing ----

def test_create_update_delete(tmp_path):
    f = tmp_path / "pw"
    r = moat_passwd("-c", "-b", f, "alice", "alice pw")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    e = entries(f)
    assert list(e) == ["alice"] and e["alice"].startswith("$argon2id$v=19$m=65536,t=3,p=1$")
    assert verify(e["alice"], "alice pw") and not verify(e["alice"], "alice pW")

    # Comments and blank lines of the user's own survive every edit.
    with open(f, "a") as fh:
        fh.write("# the team\n\n")
    assert moat_passwd("-b", "-H", "sha512-pbkdf2", f, "bob", "bob pw").returncode == 0
    assert moat_passwd("-b", "-H", "scram-sha-256", f, "carol", "carol pw").returncode == 0
    before = f.read_text().splitlines(keepends=True)
    assert before[1:3] == ["# the team\n", "\n"]

    # Update bob: his line changes in place, nothing else does.
    assert moat_passwd("-b", "-H", "scram-sha-512", f, "bob", "new bob").returncode == 0
    after = f.read_text().splitlines(keepends=True)
    assert len(after) == len(before)
    assert [a for a, b in zip(after, before) if a != b] == [after[3]]
    e = entries(f)
    assert e["bob"].startswith("$scram-sha-512$15000$") and verify(e["bob"], "new bob")
    assert verify(e["carol"], "carol pw") and e["carol"].startswith("$scram-sha-256$15000$")

    # -c starts over, as mosquitto_passwd's does.
    r = moat_passwd("-D", f, "alice")
    assert r.returncode == 0, r.stderr
    assert list(entries(f)) == ["bob", "carol"]
    assert f.read_text().startswith("# the team\n")
    r = moat_passwd("-D", f, "alice")
    assert r.returncode == 1
    assert b"Warning: User alice not found in password file." in r.stderr
    assert moat_passwd("-c", "-b", f, "dave", "dave pw").returncode == 0
    assert list(entries(f)) == ["dave"] and f.read_text().count("\n") == 1
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    no_temp_files(f)


def test_every_algorithm(tmp_path):
    f = tmp_path / "pw"
    algos = {"argon2id": "$argon2id$", "sha512-pbkdf2": "$7$210000$",
             "scram-sha-256": "$scram-sha-256$", "scram-sha-512": "$scram-sha-512$"}
    first = True
    for algo, prefix in algos.items():
        args = ["-c"] if first else []
        first = False
        r = moat_passwd(*args, "-b", "-H", algo, f, algo, "pw " + algo)
        assert r.returncode == 0, r.stderr
        h = entries(f)[algo]
        assert h.startswith(prefix)
        assert verify(h, "pw " + algo) and not verify(h, "pw")
    assert len(entries(f)) == 4


def test_password_from_stdin(tmp_path):
    f = tmp_path / "pw"
    r = moat_passwd("-c", f, "alice", input=b"from stdin\n")
    assert r.returncode == 0, r.stderr
    assert verify(entries(f)["alice"], "from stdin")
    # One line only: what follows it is not the password; CRLF is taken off.
    r = moat_passwd("-H", "sha512-pbkdf2", f, "bob", input=b"first line\r\nsecond\n")
    assert r.returncode == 0, r.stderr
    assert verify(entries(f)["bob"], "first line")
    r = moat_passwd(f, "carol", input=b"")
    assert r.returncode == 1 and b"Error: Empty password." in r.stderr
    r = moat_passwd(f, "carol", input=b"\n")
    assert r.returncode == 1 and b"Error: Empty password." in r.stderr
    r = moat_passwd(f, "carol", input=b"x" * 65536 + b"\n")
    assert r.returncode == 1 and b"must be less than 65536 characters" in r.stderr
    r = moat_passwd("-b", f, "carol", "")
    assert r.returncode == 1 and b"Error: Empty password." in r.stderr
    assert list(entries(f)) == ["alice", "bob"]


def ps_all():
    return subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True,
                          timeout=TIMEOUT).stdout


def test_password_not_in_ps(tmp_path):
    f = tmp_path / "pw"
    secret = b"Sup3r-s3cret-%d" % os.getpid()
    p = subprocess.Popen([MOAT, "passwd", "-c", "-H", "sha512-pbkdf2", str(f), "alice"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)  # waiting for the password
        assert p.poll() is None
        assert str(p.pid).encode() in ps_all()
        assert secret not in ps_all()
        with open("/proc/%d/cmdline" % p.pid, "rb") as c:
            assert secret not in c.read()
        p.stdin.write(secret + b"\n")
        p.stdin.flush()
        assert secret not in ps_all()  # while it hashes
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert secret not in out + err
    assert verify(entries(f)["alice"], secret.decode())
    assert secret not in f.read_bytes()


def run_in_pty(argv, answers):
    """Runs argv on a new pty (its controlling terminal); answers each prompt. -> (rc, output)"""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    out = b""
    pending = list(answers)
    end = time.monotonic() + TIMEOUT
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.5)
        if not r:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: the child is gone
            break
        if not data:
            break
        out += data
        if pending and out.rstrip().lower().endswith(b"password:"):
            time.sleep(0.05)  # let it turn echo off (it does so before reading)
            os.write(fd, pending.pop(0))
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def test_terminal_prompt(tmp_path):
    f = tmp_path / "pw"
    rc, out = run_in_pty([MOAT, "passwd", "-c", str(f), "alice"], [b"tty secret\n"] * 2)
    assert rc == 0, out
    assert b"Password: " in out and b"Reenter password: " in out
    assert b"tty secret" not in out  # not echoed
    assert verify(entries(f)["alice"], "tty secret")
    rc, out = run_in_pty([MOAT, "passwd", str(f), "bob"], [b"one\n", b"two\n"])
    assert rc == 2, out
    assert b"Error: Passwords do not match." in out
    assert list(entries(f)) == ["alice"]


def test_upgrade(tmp_path):
    f = tmp_path / "pw"
    mosq = subprocess.run(["mosquitto_passwd", "-c", "-b", str(f), "kept", "kept pw"],
                          capture_output=True, timeout=TIMEOUT)
    assert mosq.returncode == 0, mosq.stderr
    kept = f.read_text()
    with open(f, "a") as fh:
        fh.write("# plain ones\nplain1:first pw\n  plain2 : second:pw \n")
    r = moat_passwd("-U", f)
    assert r.returncode == 0, r.stderr
    text = f.read_text()
    assert text.startswith(kept + "# plain ones\n")
    e = entries(f)
    assert verify(e["kept"], "kept pw")
    assert e["plain1"].startswith("$argon2id$") and verify(e["plain1"], "first pw")
    assert verify(e["plain2"], "second:pw")
    # Run again: nothing left to do.
    assert moat_passwd("-U", f).returncode == 0
    assert f.read_text() == text
    # Editing a file moatd would refuse works, with a warning.
    f.write_text("p:plain\n")
    r = moat_passwd("-b", f, "bob", "bob pw")
    assert r.returncode == 0, r.stderr
    assert b"Warning: moatd will refuse this file: %s:1: not a recognised hash" % bytes(f) \
        in r.stderr
    # With -H, and a corrupt line refused before anything changes.
    f.write_text("p:plain\nbroken line\n")
    r = moat_passwd("-U", f)
    assert r.returncode == 1 and b"Error: Corrupt password file at line 2." in r.stderr
    f.write_text("p:plain\n")
    assert moat_passwd("-H", "sha512-pbkdf2", "-U", f).returncode == 0
    assert entries(f)["p"].startswith("$7$") and verify(entries(f)["p"], "plain")
    no_temp_files(f)


# ---- interoperability with Mosquitto ----

def mosq_pub(port, user, password):
    return subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(port), "-u", user, "-P",
                           password, "-t", "passwd/test", "-m", "x", "-q", "1"],
                          capture_output=True, timeout=TIMEOUT).returncode


def test_mosquitto_passwd_file_read_by_moat(tmp_path):
    f = tmp_path / "pw"
    users = {"alice": ("correct horse", []), "bob": ("hunter2", ["-H", "sha512"]),
             "carol smith": ("p@ss:w0rd", [])}
    first = True
    for user, (pw, extra) in users.items():
        argv = ["mosquitto_passwd"] + (["-c"] if first else []) + extra + ["-b", str(f), user, pw]
        first = False
        r = subprocess.run(argv, capture_output=True, timeout=TIMEOUT)
        assert r.returncode == 0, r.stderr
    e = entries(f)
    assert e["alice"].startswith("$7$101$") and e["bob"].startswith("$6$")
    for user, (pw, _) in users.items():
        assert verify(e[user], pw)

    # moat passwd edits the file without touching mosquitto_passwd's lines.
    before = f.read_text()
    assert moat_passwd("-b", f, "dave", "dave pw").returncode == 0
    assert f.read_text().startswith(before)

    b = Broker(config="password_file %s\n" % f, anonymous=False)
    try:
        for user, (pw, _) in users.items():
            assert mosq_pub(b.port, user, pw) == 0, (user, b.output()[-2000:])
            assert mosq_pub(b.port, user, pw + "x") != 0, user
        assert mosq_pub(b.port, "dave", "dave pw") == 0
        assert mosq_pub(b.port, "mallory", "correct horse") != 0
    finally:
        rc = b.stop()
        b.check_clean()
    assert rc == 0, b.output()[-2000:]


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not os.path.exists(MOSQUITTO), reason="mosquitto broker not installed")
def test_moat_file_accepted_by_mosquitto(tmp_path):
    f = tmp_path / "pw"
    assert moat_passwd("-c", "-H", "sha512-pbkdf2", "-b", f, "alice", "alice pw").returncode == 0
    assert moat_passwd("-H", "sha512-pbkdf2", f, "bob", input=b"bob pw\n").returncode == 0
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text("listener %d %s\n%sallow_anonymous false\npassword_file %s\n"
                    % (port, HOST, user, f))
    log = open(tmp_path / "mosquitto.log", "wb")
    p = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log,
                         stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 10
        while True:
            assert p.poll() is None, (tmp_path / "mosquitto.log").read_text()
            try:
                socket.create_connection((HOST, port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < end, "mosquitto did not listen"
                time.sleep(0.05)
        assert mosq_pub(port, "alice", "alice pw") == 0, (tmp_path / "mosquitto.log").read_text()
        assert mosq_pub(port, "bob", "bob pw") == 0
        assert mosq_pub(port, "alice", "bob pw") != 0
        assert mosq_pub(port, "nobody", "alice pw") != 0
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        log.close()
