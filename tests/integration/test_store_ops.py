"""Operating the durable store: key rotation, backup and restore, one process per store.

Covers:
  - `moat store rekey` moves a stopped store to a new key: afterwards the new key opens it
    with every session, queued message and retained message, and the old key does not;
  - a rotation that stopped between switching the store and renaming the key file
    (KEYFILE.next left behind) is finished at the next start; a .next the store never
    switched to is removed;
  - `moatd --restore FILE` starts from a copy of a store: the sessions and retained messages
    in the copy are back, the store that was there is moved aside (not deleted), and a
    damaged copy, a copy under another key, or a missing file refuse to start with a clear
    message, leaving the store as it was;
  - a second process on a store in use (moat store check, another moatd) is refused.
"""
import glob
import os
import shutil
import subprocess
import time

from moatlib import MOAT, MOATD
from test_persistence import client, durable, keygen, payloads, stop, subscribe  # noqa: F401


def run_moat(*args, env=None):
    e = dict(os.environ)
    e.pop("MOAT_STORE_KEY", None)
    e.update(env or {})
    return subprocess.run([MOAT] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=60, env=e)


def seed(d, tag):
    """A persistent subscriber with a queued QoS 1 message, and a retained message."""
    sub = client(d.port, "keeper-" + tag, 4)
    subscribe(sub, "q/%s/#" % tag, 1)
    stop(sub)
    pub = client(d.port, "pub-" + tag, persistent=False)
    pub.publish("q/%s/x" % tag, b"queued-" + tag.encode(), qos=1).wait_for_publish(5)
    pub.publish("r/" + tag, b"retained-" + tag.encode(), qos=1, retain=True).wait_for_publish(5)
    stop(pub)


def check_seeded(d, tag, queued=True):
    """What seed() left is all there: the queued message arrives (once), the retained one too."""
    sub = client(d.port, "keeper-" + tag, 4)
    deadline = time.time() + 5
    while queued and time.time() < deadline and b"queued-" + tag.encode() not in payloads(sub):
        time.sleep(0.05)
    assert (b"queued-" + tag.encode() in payloads(sub)) == queued
    subscribe(sub, "r/" + tag, 1)
    deadline = time.time() + 5
    while time.time() < deadline and b"retained-" + tag.encode() not in payloads(sub):
        time.sleep(0.05)
    assert b"retained-" + tag.encode() in payloads(sub)
    stop(sub)


def start_fails(conf, *args):
    r = subprocess.run([MOATD, "-c", str(conf)] + list(args), capture_output=True, text=True,
                       timeout=15)
    assert r.returncode != 0
    assert "AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr
    return r.stderr


def test_offline_rekey(durable, tmp_path):
    d = durable()
    seed(d, "a")
    d.stop()
    old = open(d.key).read()
    new = keygen(tmp_path / "new.key")
    r = run_moat("store", "rekey", d.dir, new, d.key)
    assert r.returncode == 0, r.stderr
    assert "only that key opens it now" in r.stdout
    # the old key no longer opens it; the new one does, with everything in it
    r = run_moat("store", "check", d.dir, d.key)
    assert r.returncode == 1 and "the key does not open this store" in r.stderr
    r = run_moat("store", "check", d.dir, new)
    assert r.returncode == 0, r.stderr
    assert "sessions: 1 rows, 0 damaged" in r.stdout
    assert "retained: 1 rows, 0 damaged" in r.stdout
    shutil.copy(new, d.key)
    assert open(d.key).read() != old
    d.restart()
    check_seeded(d, "a")
    d.stop()
    # refusals: a new key file others may read; a wrong current key
    bad = keygen(tmp_path / "bad.key")
    os.chmod(bad, 0o644)
    r = run_moat("store", "rekey", d.dir, bad, d.key)
    assert r.returncode == 1 and "chmod 600" in r.stderr
    r = run_moat("store", "rekey", d.dir, new, keygen(tmp_path / "other.key"))
    assert r.returncode == 1 and "the key does not open this store" in r.stderr


def test_interrupted_rotation_is_finished_at_start(durable, tmp_path):
    d = durable()
    seed(d, "b")
    d.stop()
    # what a crash between "store switched" and "key file renamed" leaves behind
    new = keygen(tmp_path / "new.key")
    r = run_moat("store", "rekey", d.dir, new, d.key)
    assert r.returncode == 0, r.stderr
    shutil.copy(new, d.key + ".next")
    os.chmod(d.key + ".next", 0o600)
    d.restart()
    assert "store_key_rotation_completed" in d.b.output()
    assert not os.path.exists(d.key + ".next")
    assert open(d.key).read() == open(new).read()
    check_seeded(d, "b")
    d.stop()
    # a .next the store never switched to is dropped, and the key file kept
    keep = open(d.key).read()
    keygen(tmp_path / "store.key.next")
    d.restart()
    assert "store_key_rotation_abandoned" in d.b.output()
    assert not os.path.exists(d.key + ".next")
    assert open(d.key).read() == keep
    check_seeded(d, "b", queued=False)
    d.stop()


def test_restore_from_a_copy(durable, tmp_path):
    d = durable()
    seed(d, "c")
    d.stop()
    copy = tmp_path / "copy.db"
    shutil.copy(os.path.join(d.dir, "moat.db"), copy)
    # the store moves on: a new session and retained message after the copy was taken
    d.restart()
    seed(d, "d")
    d.stop()
    d.b.args = ["--restore", str(copy)]
    d.restart()
    out = d.b.output()
    assert "store_restored" in out
    aside = glob.glob(os.path.join(d.dir, "moat.db.before-restore-*"))
    assert [a for a in aside if a.endswith(tuple("0123456789"))], aside
    check_seeded(d, "c")
    # what came after the copy is not in the restored store
    sub = client(d.port, "keeper-d", 4)
    subscribe(sub, "r/d", 1)
    time.sleep(0.5)
    assert payloads(sub) == []
    stop(sub)
    d.stop()
    d.b.args = []


def test_restore_refusals_leave_the_store(durable, tmp_path):
    d = durable()
    seed(d, "e")
    d.stop()
    db = os.path.join(d.dir, "moat.db")
    before = open(db, "rb").read()
    good = tmp_path / "good.db"
    shutil.copy(db, good)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(20000))
    truncated = tmp_path / "trunc.db"
    truncated.write_bytes(before[:5000])
    cases = [(tmp_path / "missing.db", "No such file"), (garbage, "damaged or not a database"),
             (truncated, "damaged or not a database")]
    for path, why in cases:
        err = start_fails(d.b.conf, "--restore", str(path))
        assert why in err, err
    # a copy under another key
    other = keygen(tmp_path / "other.key")
    conf = tmp_path / "other.conf"
    conf.write_text(open(d.b.conf).read().replace(d.key, other))
    err = start_fails(conf, "--restore", str(good))
    assert "the key does not open" in err, err
    assert open(db, "rb").read() == before
    assert glob.glob(os.path.join(d.dir, "moat.db.before-restore-*")) == []
    # persistence off: --restore makes no sense
    plain = tmp_path / "plain.conf"
    plain.write_text("listener 0 %s\n" % (tmp_path / "sock"))
    assert "persistence is off" in start_fails(plain, "--restore", str(good))
    d.restart()
    check_seeded(d, "e")
    d.stop()


def test_one_process_per_store(durable, tmp_path):
    d = durable()
    seed(d, "f")
    r = run_moat("store", "check", d.dir, d.key)
    assert r.returncode == 1 and "in use by another process" in r.stderr
    # a second moatd on the same store (another listener) refuses to start
    conf = tmp_path / "second.conf"
    conf.write_text("listener 0 %s\npersistence true\npersistence_location %s\n"
                    "persistence_key_file %s\n" % (tmp_path / "sock", d.dir, d.key))
    assert "in use by another process" in start_fails(conf)
    check_seeded(d, "f")
    d.stop()
    r = run_moat("store", "check", d.dir, d.key)
    assert r.returncode == 0, r.stderr


def test_audit_log_cut_short_is_noticed(durable, tmp_path):
    """The store keeps the audit log's head (sealed): lines cut off the log's end while
    moatd was down are reported at the next start, as an integrity event in the log itself.
    A clean restart reports nothing."""
    import json
    audit = tmp_path / "audit.log"
    d = durable("audit_log %s\n" % audit)
    for i in range(5):
        c = client(d.port, "dev-%d" % i, 4, persistent=False)
        stop(c)
    time.sleep(0.3)
    d.stop()
    d.restart()
    d.stop()
    assert "audit_log_integrity" not in d.b.output()
    lines = audit.read_text().splitlines()
    assert len(lines) > 6
    audit.write_text("\n".join(lines[:-4]) + "\n")
    d.restart()
    out = d.b.output()
    assert "audit_log_integrity" in out and "lines were removed" in out, out[-2000:]
    deadline = time.time() + 5
    found = []
    while time.time() < deadline and not found:
        found = [json.loads(ln) for ln in audit.read_text().splitlines()
                 if '"kind":"integrity"' in ln]
        time.sleep(0.1)
    assert found and "lines were removed" in found[0]["reason"], found
    d.stop()
    r = run_moat("audit", "verify", audit)
    assert r.returncode == 0, r.stdout + r.stderr
