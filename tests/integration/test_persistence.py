"""Durable state (persistence true): what survives a restart and a kill -9, sealed on disk.

Covers:
  - retained messages, persistent sessions with their subscriptions, and QoS 1/2 messages
    queued for an offline client survive SIGKILL (persistence_sync always), for MQTT 3.1.1
    (clean session 0) and 5.0 (Session Expiry); a clean session and an expired one do not;
  - the crash test: persistent subscribers, QoS 1 and QoS 2 publishers under load, moatd
    killed with SIGKILL at random moments three times; after each restart every message
    acknowledged to its publisher arrives (QoS 1 at least once, QoS 2 exactly once), and the
    retained messages and subscriptions are all there;
  - the store holds no plaintext: topics, payloads and client ids are not in its files;
  - a wrong key, no key, a key file others can read, a damaged or truncated store: moatd
    refuses to start with a clear message, and never crashes;
  - `moat store keygen` and `moat store check`.
"""
import os
import random
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from moatlib import MOAT, Broker, restartable, wait_for

MARK = "ZQX-PLAINTEXT-MARKER"


def keygen(path):
    r = subprocess.run([MOAT, "store", "keygen", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return str(path)


class Durable:
    """A moatd with persistence in tmp_path/store and a fresh key; restartable."""

    def __init__(self, tmp_path, extra=""):
        self.dir = tmp_path / "store"
        self.key = keygen(tmp_path / "store.key")
        self.b = Broker(config="persistence true\npersistence_location %s\n"
                               "persistence_key_file %s\n%s" % (self.dir, self.key, extra))
        self.port = self.b.port
        self.loaded(0)

    def loaded(self, before):
        """Waits for the store to be loaded: the MQTT port listens a moment before."""
        assert wait_for(lambda: self.b.output().count("store_loaded") > before, 15), \
            self.b.output()[-3000:]

    def kill(self):
        self.b.proc.kill()
        self.b.proc.wait(10)
        self.b.log.close()

    def restart(self):
        before = self.b.output().count("store_loaded")
        self.b.start()
        self.loaded(before)

    def stop(self):
        rc = self.b.stop()
        self.b.check_clean()
        assert rc == 0, self.b.output()[-3000:]


@pytest.fixture
def durable(tmp_path):
    yield from restartable(lambda extra="": Durable(tmp_path, extra))


def settled(d, timeout=20):
    """Waits until the store has taken every write and commits no more (moat ctl status):
    a machine under load may take a while, and a kill -9 must come after."""
    import json
    sock = os.path.join(d.dir, "admin.sock")
    last, same = None, 0
    deadline = time.time() + timeout
    while time.time() < deadline and same < 3:
        r = subprocess.run([MOAT, "ctl", "-s", sock, "--json", "status"], capture_output=True,
                           text=True)
        st = json.loads(r.stdout)["store"] if r.returncode == 0 else None
        now = st and (st["writes"], st["commits"], st["backlog"])
        same = same + 1 if now and now == last and st["backlog"] == 0 else 0
        last = now
        time.sleep(0.1)
    assert same >= 3, "the store did not settle: %r" % (last,)


def keep_pubrel_on_retry(c):
    """Works around a paho-mqtt 1.6.1 bug that would fail the crash test for the client's sake.

    Every reconnect attempt runs Client._messages_reconnect_reset_out before it opens the
    socket. The first turns a QoS 2 message waiting for PUBCOMP into "resend PUBREL"; a
    second attempt (the first failed: the broker was still down) finds that state and
    makes it "publish", so the message goes out again as a new PUBLISH with DUP 0 and the
    same packet id. After its PUBREL that is a new message to any broker [MQTT-4.3.3], and
    the subscriber gets it twice. This keeps such a message at "resend PUBREL".
    """
    reset = c._messages_reconnect_reset_out

    def reset_keeping_pubrel():
        with c._out_message_mutex:
            pubrel = [m for m in c._out_messages.values()
                      if m.qos == 2 and m.state == mqtt.mqtt_ms_resend_pubrel]
        reset()
        with c._out_message_mutex:
            for m in pubrel:
                m.state = mqtt.mqtt_ms_resend_pubrel
    c._messages_reconnect_reset_out = reset_keeping_pubrel


def client(port, cid, version=4, persistent=True, **kw):
    if version == 5:
        c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5)
    else:
        c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv311, clean_session=not persistent)
    keep_pubrel_on_retry(c)
    c.got = []
    c.lock = threading.Lock()

    def on_message(cl, u, m):
        with c.lock:
            c.got.append((m.topic, m.payload, m.qos))
    c.on_message = on_message
    c.reconnect_delay_set(0.05, 0.5)
    props = None
    if version == 5:
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if persistent else 0
        c.connect("127.0.0.1", port, clean_start=not persistent, properties=props, **kw)
    else:
        c.connect("127.0.0.1", port, **kw)
    c.loop_start()
    return c


def subscribe(c, topic, qos):
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    c.subscribe(topic, qos)
    assert done.wait(5)


def payloads(c, topic=None):
    with c.lock:
        return [p for t, p, q in c.got if topic is None or t == topic]


def stop(*cs):
    for c in cs:
        c.disconnect()
        c.loop_stop()


@pytest.mark.parametrize("version", [4, 5])
def test_state_survives_sigkill(durable, version):
    d = durable()
    # a retained message, and an offline persistent subscriber with messages waiting
    pub = client(d.port, "pub", persistent=False)
    pub.publish("plant/retained", b"kept-" + MARK.encode(), qos=1, retain=True).wait_for_publish(5)
    sub = client(d.port, "meter-%d" % version, version)
    subscribe(sub, "plant/q/#", 2)
    clean = client(d.port, "gone-%d" % version, version, persistent=False)
    subscribe(clean, "plant/q/#", 1)
    stop(sub, clean)
    for i in range(5):
        pub.publish("plant/q/%d" % i, b"m%d" % i, qos=1 + i % 2).wait_for_publish(5)
    stop(pub)
    d.kill()
    d.restart()
    assert "store_loaded" in d.b.output()
    # the retained message is there for a new subscriber
    fresh = client(d.port, "fresh", persistent=False)
    subscribe(fresh, "plant/retained", 1)
    assert wait_for(lambda: payloads(fresh) == [b"kept-" + MARK.encode()], 5)
    # the session comes back with its subscription and its five messages, in order
    sub = client(d.port, "meter-%d" % version, version)
    assert wait_for(lambda: len(payloads(sub)) >= 5, 10), payloads(sub)
    # in order within each QoS (paho hands a QoS 2 message over only at PUBREL)
    got = payloads(sub)
    assert sorted(got) == [b"m%d" % i for i in range(5)]
    assert [p for p in got if int(p[1:]) % 2 == 0] == [b"m0", b"m2", b"m4"]
    assert [p for p in got if int(p[1:]) % 2 == 1] == [b"m1", b"m3"]
    # and keeps receiving on its restored subscription, without subscribing again
    p2 = client(d.port, "pub2", persistent=False)
    p2.publish("plant/q/after", b"after", qos=1).wait_for_publish(5)
    assert wait_for(lambda: b"after" in payloads(sub), 5)
    # the clean session's client was not kept: nothing waits for it
    clean = client(d.port, "gone-%d" % version, version, persistent=False)
    time.sleep(0.5)
    assert payloads(clean) == []
    stop(sub, clean, fresh, p2)


def test_expired_session_is_not_restored(durable):
    d = durable()
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    c = mqtt.Client(client_id="short", protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 5  # long enough to settle and kill before it expires
    c.connect("127.0.0.1", d.port, clean_start=False, properties=props)
    c.loop_start()
    subscribe(c, "x/#", 1)
    stop(c)
    settled(d)  # the broker wrote down when it went offline
    d.kill()
    time.sleep(5.5)  # its expiry passes while the broker is down
    d.restart()
    assert wait_for(lambda: "store_loaded" in d.b.output(), 5)
    line = [ln for ln in d.b.output().splitlines() if "store_loaded" in ln][-1]
    assert "sessions=0" in line and "expired=1" in line, line


def test_crash_test_nothing_acknowledged_is_lost(durable):
    """kill -9 three times under QoS 1 and QoS 2 load; every acknowledged message arrives."""
    random.seed(11)
    d = durable()
    s1 = client(d.port, "crash-sub-1", 4)
    subscribe(s1, "crash/q1", 1)
    s2 = client(d.port, "crash-sub-2", 4)  # 3.1.1 clean session 0: paho keeps its QoS 2 state
    subscribe(s2, "crash/q2", 2)
    p1 = client(d.port, "crash-pub-1", 4)
    p2 = client(d.port, "crash-pub-2", 5)
    acked = {1: set(), 2: set()}
    lock = threading.Lock()
    stop_flag = threading.Event()

    def publisher(c, qos, topic):
        i = 0
        pending, early = {}, set()

        # never hold our lock while calling paho: its thread calls on_publish under its own
        def on_publish(cl, u, mid):
            with lock:
                if mid in pending:
                    acked[qos].add(pending.pop(mid))
                else:
                    early.add(mid)
        c.on_publish = on_publish
        while not stop_flag.is_set():
            info = c.publish(topic, b"%d" % i, qos=qos)
            with lock:
                if info.mid in early:
                    early.discard(info.mid)
                    acked[qos].add(i)
                else:
                    pending[info.mid] = i
            i += 1
            time.sleep(0.004)

    threads = [threading.Thread(target=publisher, args=(p1, 1, "crash/q1"), daemon=True),
               threading.Thread(target=publisher, args=(p2, 2, "crash/q2"), daemon=True)]
    for t in threads:
        t.start()
    for _ in range(3):
        time.sleep(random.uniform(0.8, 2.0))
        d.kill()
        time.sleep(random.uniform(0.05, 0.3))
        d.restart()
    time.sleep(1.5)
    stop_flag.set()
    for t in threads:
        t.join(5)
    # let the last in-flight exchanges finish, then compare
    time.sleep(1.0)
    with lock:
        want1, want2 = set(acked[1]), set(acked[2])
    assert len(want1) > 100 and len(want2) > 100, (len(want1), len(want2))
    assert wait_for(lambda: want1 <= {int(p) for p in payloads(s1)}, 20), \
        "QoS 1 lost: %s" % sorted(want1 - {int(p) for p in payloads(s1)})[:20]
    assert wait_for(lambda: want2 <= {int(p) for p in payloads(s2)}, 20), \
        "QoS 2 lost: %s" % sorted(want2 - {int(p) for p in payloads(s2)})[:20]
    got2 = [int(p) for p in payloads(s2)]
    dups = sorted({n for n in got2 if got2.count(n) > 1})
    assert not dups, "QoS 2 delivered twice: %s" % dups[:20]
    # subscriptions are all there: a new message reaches both
    p3 = client(d.port, "after-crash", persistent=False)
    p3.publish("crash/q1", b"-1", qos=1).wait_for_publish(5)
    p3.publish("crash/q2", b"-2", qos=2).wait_for_publish(5)
    assert wait_for(lambda: b"-1" in payloads(s1) and b"-2" in payloads(s2), 10)
    stop(s1, s2, p1, p2, p3)


def test_no_plaintext_on_disk(durable):
    d = durable()
    topic = "site/%s/topic" % MARK
    sub = client(d.port, "client-" + MARK, 4)
    subscribe(sub, topic, 1)
    stop(sub)
    pub = client(d.port, "pub", persistent=False)
    pub.publish(topic, ("payload-" + MARK).encode(), qos=1).wait_for_publish(5)
    pub.publish("r/" + MARK, ("retained-" + MARK).encode(), qos=1, retain=True).wait_for_publish(5)
    stop(pub)
    time.sleep(0.3)
    files = [os.path.join(d.dir, f) for f in os.listdir(d.dir)
             if not f.endswith(".sock")]  # the admin socket lives there too
    assert any(f.endswith("moat.db") for f in files)
    for f in files:
        data = open(f, "rb").read()
        assert MARK.encode() not in data, "plaintext in %s" % f
        assert oct(os.stat(f).st_mode & 0o777) == "0o600", f
    d.stop()  # a clean stop folds the WAL in: check the one file again
    data = open(os.path.join(d.dir, "moat.db"), "rb").read()
    assert MARK.encode() not in data


def start_fails(conf, env=None):
    from moatlib import MOATD
    e = dict(os.environ)
    e.pop("MOAT_STORE_KEY", None)
    e.update(env or {})
    r = subprocess.run([MOATD, "-c", conf], capture_output=True, text=True, timeout=15, env=e)
    assert r.returncode != 0
    assert "AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr
    return r.stderr


def test_refused_keys_and_damaged_stores(durable, tmp_path):
    d = durable()
    sub = client(d.port, "keeper", 4)
    subscribe(sub, "k/#", 1)
    stop(sub)
    d.stop()
    conf = tmp_path / "c.conf"
    base = "listener 0 %s\npersistence true\npersistence_location %s\n" % (
        tmp_path / "sock", d.dir)
    # no key
    conf.write_text(base)
    assert "needs a key" in start_fails(str(conf))
    # another key
    other = keygen(tmp_path / "other.key")
    conf.write_text(base + "persistence_key_file %s\n" % other)
    assert "the key does not open this store" in start_fails(str(conf))
    # a key file others may read
    os.chmod(other, 0o644)
    assert "chmod 600" in start_fails(str(conf))
    # the right key through the environment works (moat store check, offline)
    with open(d.key) as f:
        hexkey = f.read().strip()
    r = subprocess.run([MOAT, "store", "check", str(d.dir)], capture_output=True, text=True,
                       env=dict(os.environ, MOAT_STORE_KEY=hexkey))
    assert r.returncode == 0, r.stderr
    assert "sessions: 1 rows, 0 damaged" in r.stdout
    # damaged: every page after the first overwritten; then the file cut short
    db = os.path.join(d.dir, "moat.db")
    size = os.path.getsize(db)
    good = open(db, "rb").read()
    with open(db, "r+b") as f:
        f.seek(4096)
        f.write(os.urandom(size - 4096))
    conf.write_text(base + "persistence_key_file %s\n" % d.key)
    err = start_fails(str(conf))
    assert "store" in err, err
    with open(db, "wb") as f:
        f.write(good[:1000])
    assert "store" in start_fails(str(conf))


def test_store_keygen_never_overwrites(tmp_path):
    k = keygen(tmp_path / "a.key")
    before = open(k).read()
    r = subprocess.run([MOAT, "store", "keygen", k], capture_output=True, text=True)
    assert r.returncode == 1 and open(k).read() == before
    assert len(before.strip()) == 64 and oct(os.stat(k).st_mode & 0o777) == "0o600"


def test_delayed_will_survives_sigkill(durable):
    """A delayed will waiting when moatd dies is published after the restart, once; a
    client that comes back in time (after the restart) cancels it [MQTT-3.1.3-9]."""
    import socket
    from moatlib import Raw, connect5_packet, props
    d = durable()
    watcher = client(d.port, "watcher", 4)
    subscribe(watcher, "wills/#", 1)
    stop(watcher)

    def die_with_will(cid, delay):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        s.sendall(connect5_packet(cid, clean=False, props=props(session_expiry=3600),
                                  will=("wills/" + cid, "gone-" + cid, 1, False),
                                  will_props=props(will_delay=delay)))
        assert s.recv(64)[0] == 0x20
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        s.close()  # RST: no DISCONNECT, the will is armed

    die_with_will("dev-a", 3)
    die_with_will("dev-b", 3)
    time.sleep(0.5)
    d.kill()
    d.restart()
    assert "wills=2" in d.b.output()
    # dev-b comes back before its delay: its will is cancelled, for good
    back = Raw(d.port)
    back.send(connect5_packet("dev-b", clean=False,
                                      props=props(session_expiry=3600)))
    assert back.recv_packet()[0] == 0x20
    watcher = client(d.port, "watcher", 4)
    assert wait_for(lambda: b"gone-dev-a" in payloads(watcher), timeout=8)
    time.sleep(1.0)
    assert payloads(watcher).count(b"gone-dev-a") == 1
    assert b"gone-dev-b" not in payloads(watcher)
    stop(watcher)
    back.close()
    # the published will is gone from the store: a second restart does not repeat it
    d.stop()
    d.restart()
    assert "wills=0" in d.b.output().split("store_loaded")[-1].split("\n")[0]
    watcher = client(d.port, "watcher", 4)
    time.sleep(1.0)
    assert b"gone-dev-a" not in payloads(watcher)
    stop(watcher)
