"""Limits that hold against a hostile client (issue 3, "moatd"; THREATS.md class 10):
connect timeout, packet size before and after CONNECT, queue bounds, the global memory
ceiling, connection limits, slow consumers, many connections, SIGHUP and SIGTERM.

RSS checks run the broker with a small ASan quarantine (freed memory is otherwise kept
resident by design) and compare growth against generous bounds far below what the attack
would cost without the limit.
"""
import os
import signal
import socket
import time
import uuid

import pytest

from moatlib import (PUBACK, Publish, Raw, ack_packet, clients,  # noqa: F401
                     connect_packet, disconnect_packet, make_broker,
                     parse_connack, parse_reason, props, publish_packet, raw_session,
                     subscribe_packet, varint, wait_for, watchdog)

SMALL_QUARANTINE = "quarantine_size_mb=1:thread_local_quarantine_size_kb=64"


def uniq(name="t"):
    return "%s-%s" % (name, uuid.uuid4().hex[:8])


def roundtrip(port, version=5):
    """A fresh client can connect, subscribe and get its own QoS 1 message."""
    t = uniq("rt")
    r = raw_session(port, version, uniq("rt"))
    r.subscribe([(t, 1)])
    r.send(publish_packet(t, b"ping", 1, 1, version=version))
    got = False
    acked = False
    deadline = time.time() + 5
    while not (got and acked) and time.time() < deadline:
        p = r.recv_packet(max(0.05, deadline - time.time()))
        assert p is not None, "round trip client lost its connection"
        if p[0] >> 4 == 4:
            acked = True
        elif p[0] >> 4 == 3:
            m = Publish(p[0], p[1], version)
            r.send(ack_packet(PUBACK, m.pid, version))
            got = m.payload == b"ping"
    r.close()
    return got and acked


# ---- before CONNECT ----

def test_connect_timeout(make_broker):
    """connect_timeout: a socket that never sends CONNECT is closed, and so is a slowloris
    sending its CONNECT one byte per second (CVE-2023-5632), at the deadline, not when the
    CONNECT would have been complete."""
    b = make_broker(config="connect_timeout 2\n")
    idle = Raw(b.port)
    slow = Raw(b.port)
    data = connect_packet(uniq("slowloris-client-id-long-enough"), 4)
    assert len(data) > 30
    sent = 0
    closed = False
    start = time.time()
    while sent < len(data) and time.time() - start < 12:
        if not slow.send_quiet(data[sent:sent + 1]):
            closed = True
            break
        sent += 1
        closed, pkts = slow.wait_closed(1.0)
        if closed:
            assert pkts == []
            break
    assert closed, "slowloris still connected after %d bytes" % sent
    assert sent < len(data), "the CONNECT was complete before the broker closed"
    assert idle.wait_closed(5) == (True, [])
    assert roundtrip(b.port)


def test_preauth_huge_remaining_length(make_broker):
    """A CONNECT announcing 200 MB (CVE-2017-7651, CVE-2023-0809) is refused as soon as its
    fixed header is in; the broker buffers nothing for it."""
    b = make_broker(asan_options=SMALL_QUARANTINE)
    assert roundtrip(b.port)
    rss0 = b.rss_kb()
    socks = []
    for _ in range(20):
        r = Raw(b.port)
        r.send(b"\x10" + varint(200 * 1024 * 1024))
        socks.append(r)
    chunk = b"\x00" * 65536
    for r in socks:
        for _ in range(16):  # 1 MiB each, if the broker still reads
            if not r.send_quiet(chunk):
                break
    for r in socks:
        closed, pkts = r.wait_closed(5)
        assert closed and pkts == []
    grown = b.rss_kb() - rss0
    assert grown < 16 * 1024, "RSS grew by %d KiB" % grown
    assert roundtrip(b.port)


def test_preauth_max_packet_size(make_broker):
    """preauth_max_packet_size bounds the CONNECT; max_packet_size applies after it."""
    b = make_broker(config="preauth_max_packet_size 1024\nmax_packet_size 100000\n")
    big_connect = connect_packet(uniq(), 5, props=props(user_property=[("k", "v" * 2000)]))
    r = Raw(b.port)
    r.send_quiet(big_connect)
    assert r.wait_closed(5)[0]
    r = raw_session(b.port, 5, uniq())
    assert r.connack_props["maximum_packet_size"] == 100000
    t = uniq()
    r.subscribe([(t, 0)])
    r.publish(t, b"x" * 50000, 0)
    got = r.publishes(1)
    assert len(got) == 1 and len(got[0].payload) == 50000
    r.send_quiet(publish_packet(t, b"x" * 200000, 0, version=5))
    closed, pkts = r.wait_closed(5)
    assert closed and [(p[0], parse_reason(*p, 5)[1]) for p in pkts] == [(0xE0, 0x95)]
    assert roundtrip(b.port)


# ---- queues and memory ----

@pytest.mark.parametrize("version", [4, 5])
def test_max_queued_messages(make_broker, version):
    """max_queued_messages 10: an offline persistent session keeps at most 10 of 50 QoS 1
    messages; the others are dropped, not the client."""
    b = make_broker(config="max_queued_messages 10\n")
    t = uniq()
    cid = uniq("offline")
    kw = {"props": props(session_expiry=300)} if version == 5 else {}
    s = raw_session(b.port, version, cid, clean=False, **kw)
    s.subscribe([(t, 1)])
    s.close()
    p = raw_session(b.port, 5, uniq())
    for i in range(50):
        p.publish(t, b"%d" % i, 1, pid=i + 1)
    s = raw_session(b.port, version, cid, clean=False, **kw)
    assert s.session_present
    got = s.publishes(10)
    got += s.publishes(50, timeout=0.7)
    assert len(got) == 10, [m.payload for m in got]
    assert [m.payload for m in got] == [b"%d" % i for i in range(10)]
    # the queue works again once drained
    p.publish(t, b"after", 1, pid=99)
    assert [m.payload for m in s.publishes(1)] == [b"after"]


def test_max_queued_bytes(make_broker):
    b = make_broker(config="max_queued_messages 0\nmax_queued_bytes 1000\n")
    t = uniq()
    cid = uniq("offline")
    s = raw_session(b.port, 4, cid, clean=False)
    s.subscribe([(t, 1)])
    s.close()
    p = raw_session(b.port, 5, uniq())
    for i in range(30):
        p.publish(t, b"%03d" % i + b"x" * 97, 1, pid=i + 1)
    s = raw_session(b.port, 4, cid, clean=False)
    got = s.publishes(30, timeout=1.5)
    assert len(got) == 10, len(got)


def test_memory_limit(make_broker):
    """memory_limit: flooding large messages to an offline persistent session does not grow
    the broker past the ceiling; the publisher is told (5.0 PUBACK 0x97), other clients go
    on, and memory comes back when the session goes."""
    limit = 4 * 1024 * 1024
    b = make_broker(config="memory_limit %d\nmax_queued_messages 0\n" % limit,
                    asan_options=SMALL_QUARANTINE)
    t = uniq()
    cid = uniq("sink")
    s = raw_session(b.port, 5, cid, clean=False, props=props(session_expiry=300))
    s.subscribe([(t, 1)])
    s.close()
    assert roundtrip(b.port)
    rss0 = b.rss_kb()
    p = raw_session(b.port, 5, uniq("flood"))
    payload = b"m" * 65536
    codes = []
    pid = 0
    for batch in range(40):  # 40 x 25 x 64 KiB = 62.5 MiB offered
        data = b""
        for _ in range(25):
            pid += 1
            data += publish_packet(t, payload, 1, pid, version=5)
        p.send(data)
        for _ in range(25):
            codes.append(parse_reason(*p.expect(4, timeout=10), 5)[1])
    grown = b.rss_kb() - rss0
    assert 0x97 in codes, "memory_limit never refused a message"
    assert codes.count(0) * 65536 <= limit + 65536, "more accepted than the ceiling"
    assert grown < 40 * 1024, "RSS grew by %d KiB with a 4 MiB ceiling" % grown
    # others are served: connect, ping, subscribe
    o = raw_session(b.port, 4, uniq())
    assert o.ping()
    # the sink's session goes: memory is free for everyone again
    s = raw_session(b.port, 5, cid, clean=True)
    assert not s.session_present
    s.close()
    assert wait_for(lambda: roundtrip(b.port), 5)
    assert p.publish(t, b"small", 1, pid=1) == 0x10  # accepted (no subscriber left)


def test_message_size_limit(make_broker):
    b = make_broker(config="message_size_limit 1000\n")
    t = uniq()
    s = raw_session(b.port, 5, uniq())
    s.subscribe([(t, 0)])
    p = raw_session(b.port, 5, uniq())
    assert p.publish(t, b"x" * 1001, 1) == 0x97
    assert p.publish(t, b"x" * 1000, 1, pid=2) == 0
    got = s.publishes(2, timeout=1)
    assert [len(m.payload) for m in got] == [1000]


def test_max_subscriptions_per_client(make_broker):
    b = make_broker(config="max_subscriptions_per_client 3\n")
    for version, refused in ((5, 0x97), (4, 0x80)):
        r = raw_session(b.port, version, uniq())
        codes = r.subscribe([("a", 1), ("b", 1), ("c", 1), ("d", 1)])
        assert codes == [1, 1, 1, refused]
        # replacing an existing subscription is not a new one
        assert r.subscribe([("a", 0)], pid=2) == [0]


def test_max_inflight_bytes(make_broker):
    """max_inflight_bytes (docs/configuration.md): no more payload bytes in flight to one
    client than the limit, whichever of it and max_inflight_messages comes first."""
    b = make_broker(config="max_inflight_bytes 1000\n")
    t = uniq()
    s = raw_session(b.port, 4, uniq())
    s.subscribe([(t, 1)])
    p = raw_session(b.port, 5, uniq())
    for i in range(10):
        p.publish(t, b"%d" % i + b"x" * 399, 1, pid=i + 1)
    got = s.publishes(10, timeout=1.0, ack=False)
    assert 1 <= len(got) <= 3, "%d messages of 400 bytes in flight with max_inflight_bytes " \
        "1000" % len(got)


# ---- capabilities ----

def test_max_qos_and_retain_available(make_broker):
    """max_qos 1 and retain_available false are announced in CONNACK [MQTT-3.2.2-9],
    [MQTT-3.2.2-13]; a subscription is granted at most QoS 1; a PUBLISH at QoS 2 gets
    DISCONNECT 0x9B [MQTT-3.2.2-11], a retained one 0x9A [MQTT-3.2.2-14]."""
    b = make_broker(config="max_qos 1\nretain_available false\n")
    r = raw_session(b.port, 5, uniq())
    assert r.connack_props.get("maximum_qos") == 1
    assert r.connack_props.get("retain_available") == 0
    assert r.subscribe([("a", 2)]) == [1]
    r.send(publish_packet("a", b"x", 2, 1, version=5))
    closed, pkts = r.wait_closed(5)
    assert closed and [(p[0], parse_reason(*p, 5)[1]) for p in pkts] == [(0xE0, 0x9B)]
    r = raw_session(b.port, 5, uniq())
    r.send(publish_packet("a", b"x", 0, retain=True, version=5))
    closed, pkts = r.wait_closed(5)
    assert closed and [(p[0], parse_reason(*p, 5)[1]) for p in pkts] == [(0xE0, 0x9A)]
    r = Raw(b.port)
    r.send(connect_packet(uniq(), 5, will=("w", "m", 2, False)))
    assert parse_connack(r.expect(2)[1], 5)[1] == 0x9B
    assert roundtrip(b.port)


# ---- connections ----

def test_max_connections(make_broker):
    """max_connections on a listener: the connection over the limit is closed at once; a
    slot freed is usable again."""
    b = make_broker(config="max_connections 5\n")
    rs = [raw_session(b.port, 4, uniq()) for _ in range(5)]
    extra = Raw(b.port)
    extra.send_quiet(connect_packet(uniq(), 4))
    closed, pkts = extra.wait_closed(5)
    assert closed and pkts == []
    rs[0].send(disconnect_packet(version=4))
    assert rs[0].wait_closed(5)[0]

    def try_connect():
        r = Raw(b.port)
        if not r.send_quiet(connect_packet(uniq(), 4)):
            return False
        p = r.recv_packet(2)
        ok = p is not None and p[0] == 0x20
        r.close()
        return ok
    assert wait_for(try_connect, 5), "a freed slot was not reusable"
    for r in rs[1:]:
        assert r.ping()


def test_many_connections(make_broker):
    """500 connections at once, across the worker threads, all served; then all gone."""
    b = make_broker(config="workers 4\n")
    n = 500
    rs = []
    for i in range(n):
        r = Raw(b.port, timeout=10)
        r.version = 4 + (i % 2)
        r.send(connect_packet("many-%d" % i, r.version))
        rs.append(r)
    for r in rs:
        first, body = r.expect(2, timeout=20)
        assert body[1] == 0
    t = uniq()
    subs = rs[:50]
    for r in subs:
        r.subscribe([(t, 1)])
    with clients(b.port) as mk:
        p = mk(client_id=uniq(), version=5)
        p.connect()
        p.publish(t, b"to-all", 1)
    for r in subs:
        assert [m.payload for m in r.publishes(1, timeout=10)] == [b"to-all"]
    for r in rs[::3]:
        r.send(disconnect_packet(version=r.version))
    for r in rs:
        r.close()
    assert roundtrip(b.port)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_fd_exhaustion(make_broker):
    """Out of file descriptors (accept fails with EMFILE): the broker neither crashes nor
    spins on the listening socket, keeps its clients, survives a reload (CVE-2017-7652), and
    accepts again once descriptors are free."""
    import subprocess
    b = make_broker()
    by = raw_session(b.port, 5, uniq("by"))
    subprocess.run(["prlimit", "--pid", str(b.proc.pid), "--nofile=48:"], check=True)
    socks = []
    for _ in range(80):
        s = socket.create_connection(("127.0.0.1", b.port), timeout=5)
        s.sendall(connect_packet(uniq(), 4))
        socks.append(s)
    time.sleep(0.5)
    log0 = len(b.output())
    cpu0 = cpu_seconds(b.proc.pid)
    time.sleep(2.0)
    used = cpu_seconds(b.proc.pid) - cpu0
    logged = len(b.output()) - log0
    assert by.ping()
    b.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload" in b.output()[log0:], 5)
    assert by.ping()
    for s in socks:
        s.close()
    subprocess.run(["prlimit", "--pid", str(b.proc.pid), "--nofile=4096:"], check=True)
    assert wait_for(lambda: roundtrip(b.port), 10)
    assert used < 1.0, "moatd used %.2f s of CPU in 2 s while out of descriptors" % used
    assert logged < 100000, "moatd logged %d bytes in 2 s while out of descriptors" % logged


def test_many_subscriptions_and_retained(make_broker):
    """10000 subscriptions on one client and 5000 retained messages: served, then freed."""
    b = make_broker()
    t = uniq()
    r = raw_session(b.port, 5, uniq())
    for k in range(10):
        codes = r.subscribe([("%s/%d/+/x" % (t, k * 1000 + i), 1) for i in range(1000)],
                            pid=k + 1)
        assert codes == [1] * 1000
    p = raw_session(b.port, 5, uniq())
    data = b"".join(publish_packet("%s/r/%d" % (t, i), b"r", 0, retain=True, version=5)
                    for i in range(5000))
    p.send(data)
    assert p.ping()
    s = raw_session(b.port, 5, uniq())
    s.subscribe([(t + "/r/#", 0)])
    got = s.publishes(5000, timeout=20)
    assert len(got) == 5000 and all(m.retain for m in got)
    p.publish("%s/777/a/x" % t, b"hit", 1, pid=1)
    assert [m.payload for m in r.publishes(1)] == [b"hit"]
    r.send(disconnect_packet(0))
    p.send(b"".join(publish_packet("%s/r/%d" % (t, i), b"", 0, retain=True, version=5)
                    for i in range(5000)))
    assert p.ping()
    s2 = raw_session(b.port, 5, uniq())
    s2.subscribe([(t + "/#", 0)])
    assert s2.publishes(1, timeout=0.5) == []


def test_connect_handover_race(make_broker):
    """Clients whose CONNECT is followed at once by more packets, or by a close, while the
    connection moves to its client id's home worker: every one is answered in order, and
    nothing is touched after the move by the accepting worker (ASan checks at teardown)."""
    b = make_broker(config="workers 4\n")
    t = uniq()
    for i in range(300):
        r = Raw(b.port)
        cid = "race-%d-%s" % (i, uuid.uuid4().hex[:6])
        if i % 2:
            r.send(connect_packet(cid, 4) + disconnect_packet(version=4))
            r.close()
            continue
        r.send(connect_packet(cid, 5) + subscribe_packet(1, [(t + "/" + cid, 1)], 5) +
               publish_packet(t + "/" + cid, b"self", 1, 2, version=5) + b"\xc0\x00" +
               disconnect_packet(0))
        closed, pkts = r.wait_closed(5)
        assert closed
        kinds = [p[0] >> 4 for p in pkts]
        assert kinds and kinds[0] == 2 and sorted(kinds[1:]) == [3, 4, 9, 13], kinds
        r.close()
    assert roundtrip(b.port)


def test_slow_consumer(make_broker):
    """Subscribers that never read do not stop a fast publisher, nor delivery to the other
    subscribers; the broker's memory for them stays bounded."""
    b = make_broker(asan_options=SMALL_QUARANTINE)
    t = uniq()
    slow = []
    for q in (0, 1):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", b.port))
        r = Raw.__new__(Raw)
        r.s, r.buf, r.skipped, r.version = s, b"", [], 5
        r.s.settimeout(5)
        r.send(connect_packet(uniq("slow"), 5))
        r.expect(2)
        r.subscribe([(t, q)])
        slow.append(r)  # and never read again
    n = 400
    payload = b"p" * 32768
    with clients(b.port) as mk:
        fast = mk(client_id=uniq("fast"), version=5)
        fast.connect()
        fast.subscribe(t, 1)
        p = mk(client_id=uniq("pub"), version=5)
        p.connect()
        rss0 = b.rss_kb()
        infos = [p.c.publish(t, payload, 1) for _ in range(n)]
        deadline = time.time() + 60
        for i in infos:
            i.wait_for_publish(max(0.1, deadline - time.time()))
            assert i.is_published(), "the publisher was held up"
        got = fast.wait_messages(n, 30)
        assert len(got) == n
        grown = b.rss_kb() - rss0
        # without bounds: 2 x 400 x 32 KiB queued for the slow ones and more
        assert grown < 60 * 1024, "RSS grew by %d KiB" % grown
    for r in slow:
        r.close()
    assert roundtrip(b.port)


# ---- signals ----

def test_sighup_reload_keeps_clients(make_broker):
    """SIGHUP re-reads the config: connected clients stay, reload-safe settings apply, a
    broken file is refused and the running config kept."""
    b = make_broker(config="max_queued_messages 1000\n")
    t = uniq()
    with clients(b.port) as mk:
        cs = [mk(client_id=uniq(), version=v) for v in (4, 5)]
        for c in cs:
            c.connect()
            c.subscribe(t, 1)
        with open(b.conf, "a") as f:
            f.write("message_size_limit 100\n")
        b.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reloaded" in b.output(), 5), b.output()[-2000:]
        p = mk(client_id=uniq(), version=5)
        p.connect()
        p.publish(t, b"small", 1)
        info = p.c.publish(t, b"x" * 200, 1)
        info.wait_for_publish(5)
        for c in cs:
            got = c.wait_messages(1)
            assert [m.payload for m in got] == [b"small"]
            assert c.disconnects == []
        with open(b.conf, "a") as f:
            f.write("no_such_directive 1\n")
        b.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload_failed" in b.output(), 5)
        p.publish(t, b"still", 1)
        for c in cs:
            assert b"still" in [m.payload for m in c.wait_messages(2)]
            assert c.disconnects == []
    # put the file back so teardown's stop is not confused by anything
    with open(b.conf) as f:
        text = f.read().replace("no_such_directive 1\n", "")
    with open(b.conf, "w") as f:
        f.write(text)


def test_sigterm_with_clients(make_broker):
    """SIGTERM with clients connected (some with wills, some persistent): moatd exits 0 within
    a few seconds; 5.0 clients are told DISCONNECT 0x8B (Server shutting down)."""
    b = make_broker(config="workers 3\n")
    t = uniq()
    raws = []
    for i in range(10):
        kw = {"will": (t + "/will", "w%d" % i, 1, False)} if i % 2 else {}
        raws.append(raw_session(b.port, 5 if i < 5 else 4, uniq("c%d" % i),
                                clean=i % 3 != 0, **kw))
    for r in raws[:3]:
        r.subscribe([(t + "/#", 1)])
    with clients(b.port) as mk:
        ps = [mk(client_id=uniq(), version=v, clean=False) for v in (4, 5)]
        for c in ps:
            c.connect()
            c.subscribe(t, 2)
        start = time.time()
        rc = b.stop(signal.SIGTERM, timeout=10)
        assert rc == 0, b.output()[-3000:]
        assert time.time() - start < 10
    for r in raws:
        closed, pkts = r.wait_closed(5)
        assert closed
        disc = [p for p in pkts if p[0] >> 4 == 14]
        if r.version == 5:
            assert [parse_reason(*p, 5)[1] for p in disc] == [0x8B]
        else:
            assert disc == []


def test_large_retained_snapshot_at_qos0_reaches_a_slow_reader(make_broker):
    """A QoS 0 subscription to a filter with 12,000 retained messages (about 12 MB: past the
    socket buffers and the 4 MiB of output that stops live QoS 0 sends) by a client that
    does not read for a
    while: with max_queued_messages 0 (no limit) every retained message arrives, the rest
    waiting in its queue until the socket drains."""
    from moatlib import connect_packet, publish_packet, subscribe_packet
    b = make_broker(config="max_queued_messages 0\n")
    n = 12000
    pub = Raw(b.port)
    pub.send(connect_packet("filler", 4))
    assert pub.recv_packet()[0] == 0x20
    for k in range(0, n, 500):
        pub.send(b"".join(publish_packet("snap/%d" % i, b"v" * 1000, retain=True)
                          for i in range(k, k + 500)))
    pub.send(b"\xc0\x00")  # PINGREQ: everything before it was read
    assert pub.recv_packet(30)[0] == 0xD0
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before connect: no autotuning
    s.settimeout(30)
    s.connect(("127.0.0.1", b.port))
    s.sendall(connect_packet("slow-hmi", 4) + subscribe_packet(1, [("snap/#", 0)]))
    time.sleep(1.0)  # not reading: the broker's output backs up
    topics, buf = set(), b""
    deadline = time.time() + 60
    s.settimeout(5)
    while len(topics) < n and time.time() < deadline:
        try:
            chunk = s.recv(1 << 20)
        except socket.timeout:
            break  # nothing more is coming
        if not chunk:
            break
        buf += chunk
        pos = 0  # parse by index: slicing the buffer per packet would be quadratic
        while len(buf) - pos >= 2:
            ln, mult, i = 0, 1, pos + 1
            while i < len(buf) and buf[i] & 0x80:
                ln += (buf[i] & 127) * mult
                mult *= 128
                i += 1
            if i >= len(buf):
                break
            ln += (buf[i] & 127) * mult
            i += 1
            if len(buf) < i + ln:
                break
            if buf[pos] >> 4 == 3:
                tl = int.from_bytes(buf[i:i + 2], "big")
                topics.add(buf[i + 2:i + 2 + tl])
            pos = i + ln
        buf = buf[pos:]
    s.close()
    pub.close()
    assert len(topics) == n, "%d of %d retained messages arrived" % (len(topics), n)
