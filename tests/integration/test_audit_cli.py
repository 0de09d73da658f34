"""`moat audit verify` against audit logs written here, in Python, by the chain rule.

The logs are made without moat: this file implements the line format and the hash chain
of src/security/audit.h on its own, so it also pins that format (a change to either side
shows here). The rule: a line is one JSON object, no spaces, ending in
'"prev":"<hex>","hash":"<hex>"}'; "hash" is the hex SHA-256 of the line's text before
',"hash":'; "prev" is the previous line's hash (64 zeros for a log's first line, the old
file's last hash for the "rotated" line that begins a rotated file); "seq" counts up by one.

Covers:
  - a good log, with hostile field contents (quotes, newlines, control characters,
    non-ASCII, escaped and not): "ok: N lines, chain intact", the last hash, exit 0;
  - tampering: a changed byte, a deleted line, two lines swapped, the last line cut, a
    line that is not UTF-8 or not JSON even with a matching hash, a log whose first lines
    were removed: exit 1 naming the first bad line;
  - a rotated series PATH.2, PATH.1, PATH: followed from PATH, --no-follow, listed
    explicitly oldest first; a changed, missing or swapped file in the series;
  - usage and unreadable files.
"""
import hashlib
import json
import os
import subprocess

import pytest

from moatlib import MOAT

ZEROS = "0" * 64
TIMEOUT = 20


@pytest.fixture(scope="module", autouse=True)
def moat_binary():
    if not os.path.exists(MOAT):
        pytest.fail("%s not found: build it, or set MOAT_BUILD to its directory" % MOAT)


def audit(*args):
    return subprocess.run([MOAT, "audit"] + [str(a) for a in args], capture_output=True,
                          timeout=TIMEOUT, text=True)


# ---- writing logs by the chain rule ----

def member(key, value):
    return json.dumps(key) + ":" + json.dumps(value, ensure_ascii=False)


def make_line(seq, kind, prev, ts="2026-01-02T03:04:05.678Z", **fields):
    """One line (bytes, with its newline) and its hash."""
    parts = [member("ts", ts), member("seq", seq), member("kind", kind)]
    parts += [member(k, v) for k, v in fields.items()]
    parts.append(member("prev", prev))
    text = ("{" + ",".join(parts)).encode("utf-8")
    digest = hashlib.sha256(text).hexdigest()
    return text + b',"hash":"' + digest.encode() + b'"}\n', digest


HOSTILE = [
    {"addr": "192.0.2.1:5000", "client_id": "c1", "username": "alice", "method": "password",
     "reason": "bad password", "port": 1883, "value": 3},
    {"client_id": 'x"}\n{"seq":1', "username": "back\\slash", "topic": "a/b\tc\r\x01\x7f"},
    {"client_id": "\u00e9\u20ac\U0001F600\u009b\u2028", "value": -7},
    {"client_id": "", "reason": "x" * 3000},
]


def make_log(n, first_seq=1, prev=ZEROS, rotated=False):
    """n lines (a "rotated" line first if rotated); returns (bytes, last hash, last seq)."""
    out = b""
    seq = first_seq
    for i in range(n):
        if i == 0 and rotated:
            line, prev = make_line(seq, "rotated", prev)
        else:
            line, prev = make_line(seq, "auth_failure", prev, **HOSTILE[i % len(HOSTILE)])
        out += line
        seq += 1
    return out, prev, seq - 1


def lines_of(data):
    return data.splitlines(keepends=True)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def assert_ok(r, lines, last, files=1):
    assert r.returncode == 0, r.stdout + r.stderr
    suffix = " (%d files)" % files if files > 1 else ""
    assert r.stdout.splitlines() == ["ok: %d lines, chain intact%s" % (lines, suffix),
                                     "last hash: %s" % last]


def assert_broken(r, path, line, why=None):
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout.strip()
    assert out.startswith("broken: %s:%d: " % (path, line)), out
    if why:
        assert why in out, out


# ---- one file ----

def test_good_log(tmp_path):
    p = tmp_path / "audit.log"
    data, last, _ = make_log(12)
    write(p, data)
    assert_ok(audit("verify", p), 12, last)
    # Python's own parser agrees every line is one JSON object with the members in order.
    for raw in lines_of(data):
        obj = json.loads(raw)
        assert list(obj)[:3] == ["ts", "seq", "kind"] and list(obj)[-2:] == ["prev", "hash"]


def test_ascii_escaped_log_is_fine(tmp_path):
    """The verifier hashes the text as it is: any valid JSON escaping verifies."""
    p = tmp_path / "audit.log"
    prev, out = ZEROS, b""
    for seq in (1, 2):
        text = '{"ts":"x","seq":%d,"kind":"k","reason":%s,"prev":"%s"' % (
            seq, json.dumps("\u00e9\U0001F600\"\\/\b\f"), prev)
        prev = hashlib.sha256(text.encode()).hexdigest()
        out += text.encode() + b',"hash":"' + prev.encode() + b'"}\n'
    write(p, out)
    assert_ok(audit("verify", p), 2, prev)


def test_empty_log(tmp_path):
    p = tmp_path / "audit.log"
    write(p, b"")
    r = audit("verify", p)
    assert r.returncode == 0 and r.stdout.startswith("ok: 0 lines, chain intact")


@pytest.mark.parametrize("line", [1, 2, 5, 8])
def test_changed_byte(tmp_path, line):
    p = tmp_path / "audit.log"
    data, _, _ = make_log(8)
    lines = lines_of(data)
    # Change a character of the event (not of the hash): its hash no longer matches.
    lines[line - 1] = lines[line - 1].replace(b'"seq":', b'"seq" :', 1) if line == 5 else \
        lines[line - 1].replace(b"auth_failure", b"auth_success", 1)
    write(p, b"".join(lines))
    assert_broken(audit("verify", p), p, line)


def test_changed_hash_and_prev(tmp_path):
    """Recomputing one line's hash after editing it breaks the next line's link."""
    p = tmp_path / "audit.log"
    data, _, _ = make_log(6)
    lines = lines_of(data)
    obj = json.loads(lines[2])
    forged, _ = make_line(obj["seq"], "auth_success", obj["prev"])
    lines[2] = forged
    write(p, b"".join(lines))
    assert_broken(audit("verify", p), p, 4, '"prev" is not the hash of line 3')


def test_deleted_line(tmp_path):
    p = tmp_path / "audit.log"
    data, _, _ = make_log(6)
    lines = lines_of(data)
    write(p, b"".join(lines[:3] + lines[4:]))
    assert_broken(audit("verify", p), p, 4, '"prev" is not the hash of line 3')
    # The first line removed: what is left does not begin a log.
    write(p, b"".join(lines[1:]))
    assert_broken(audit("verify", p), p, 1, "lines before it are missing")


def test_swapped_lines(tmp_path):
    p = tmp_path / "audit.log"
    data, _, _ = make_log(6)
    lines = lines_of(data)
    lines[2], lines[3] = lines[3], lines[2]
    write(p, b"".join(lines))
    assert_broken(audit("verify", p), p, 3)


def test_truncated_last_line(tmp_path):
    p = tmp_path / "audit.log"
    data, _, _ = make_log(5)
    for cut in (1, 2, 70, len(lines_of(data)[-1]) - 1):
        write(p, data[:-cut])
        assert_broken(audit("verify", p), p, 5)


def test_seq_gap(tmp_path):
    p = tmp_path / "audit.log"
    l1, h1 = make_line(1, "reload", ZEROS)
    l2, _ = make_line(3, "reload", h1)
    write(p, l1 + l2)
    assert_broken(audit("verify", p), p, 2, '"seq" 3 does not follow 1')


@pytest.mark.parametrize("bad", [
    b'{"ts":"x","seq":1,"kind":"\xff","prev":"%s"',            # not UTF-8
    b'{"ts":"x","seq":1,"kind":"a\nb","prev":"%s"',            # a raw newline: two lines
    b'{"ts":"x", "seq":1,"kind":"k","prev":"%s"',              # a space: not our format
    b'{"ts":"x","seq":"1","kind":"k","prev":"%s"',             # seq a string
    b'{"ts":"x","kind":"k","prev":"%s"',                       # no seq
    b'{"ts":"x","seq":1,"kind":"\\q","prev":"%s"',             # a bad escape
    b'{"ts":"x","seq":1,"prev":"%s","kind":"k"',               # prev not before hash
])
def test_not_an_audit_line(tmp_path, bad):
    """Lines the writer never makes are refused even when their hash matches."""
    p = tmp_path / "audit.log"
    text = bad % ZEROS.encode()
    line = text + b',"hash":"' + hashlib.sha256(text).hexdigest().encode() + b'"}\n'
    write(p, line)
    assert_broken(audit("verify", p), p, 1)


# ---- a rotated series ----

def make_series(tmp_path):
    """PATH.2 (the log's start), PATH.1 and PATH, each of the later ones begun by "rotated"."""
    p = tmp_path / "audit.log"
    d2, h, s = make_log(5)
    d1, h, s = make_log(4, s + 1, h, rotated=True)
    d0, h, s = make_log(3, s + 1, h, rotated=True)
    write(str(p) + ".2", d2)
    write(str(p) + ".1", d1)
    write(p, d0)
    return p, h


def test_series(tmp_path):
    p, last = make_series(tmp_path)
    assert_ok(audit("verify", p), 12, last, files=3)
    assert_ok(audit("verify", "--no-follow", p), 3, last)
    assert_ok(audit("verify", str(p) + ".2", str(p) + ".1", p), 12, last, files=3)
    # Out of order: PATH.1's first line does not continue PATH's last.
    assert_broken(audit("verify", p, str(p) + ".1"), str(p) + ".1", 1,
                  "does not continue the previous file")


def test_series_oldest_deleted_by_rotation(tmp_path):
    """Rotation deletes the oldest file: the rest still verifies (PATH.1 begins "rotated")."""
    p, last = make_series(tmp_path)
    os.unlink(str(p) + ".2")
    assert_ok(audit("verify", p), 7, last, files=2)


def test_series_tampered(tmp_path):
    p, _ = make_series(tmp_path)
    one = str(p) + ".1"
    with open(one, "rb") as f:
        good = f.read()
    lines = lines_of(good)
    lines[2] = lines[2].replace(b"auth_failure", b"auth_success", 1)
    write(one, b"".join(lines))
    assert_broken(audit("verify", p), one, 3, "hash does not match")
    # Its last line removed: PATH no longer continues it.
    write(one, b"".join(lines_of(good)[:-1]))
    assert_broken(audit("verify", p), p, 1, "does not continue the previous file")
    # A missing middle file is an error, not a shorter series.
    os.unlink(one)
    r = audit("verify", p)
    assert r.returncode == 1 and one in r.stderr
    # Another log's file in its place.
    other, _, _ = make_log(4, 6, hashlib.sha256(b"x").hexdigest(), rotated=True)
    write(one, other)
    assert_broken(audit("verify", p), one, 1, "does not continue the previous file")


# ---- usage ----

def test_usage(tmp_path):
    r = audit()
    assert r.returncode == 2 and "verify" in r.stderr
    r = audit("--help")
    assert r.returncode == 0 and "verify" in r.stdout
    r = audit("bogus")
    assert r.returncode == 2
    r = audit("verify")
    assert r.returncode == 2 and "Usage: moat audit verify" in r.stderr
    r = audit("verify", "--help")
    assert r.returncode == 0 and "--no-follow" in r.stdout
    r = audit("verify", "--bogus", "x")
    assert r.returncode == 2
    r = audit("verify", tmp_path / "missing.log")
    assert r.returncode == 1 and "missing.log" in r.stderr
    r = subprocess.run([MOAT, "help"], capture_output=True, text=True, timeout=TIMEOUT)
    assert "audit" in r.stdout
