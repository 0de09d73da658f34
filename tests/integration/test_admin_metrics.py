"""GET /metrics and GET /v1/events through `moat ctl`, against a running moatd with real
clients attached.

Covers:
  - the metrics text is Prometheus' text format 0.0.4: every sample line is
    `name{labels} value` with a float value, every metric has one # HELP and one # TYPE
    line before its samples, no sample twice;
  - the counters move by exactly what the clients did: PUBLISH received and sent by QoS,
    connections, authentications by method and result, auth_failure events, a drop by
    reason (message_size_limit), queued messages of an offline session, bans, the store's
    commits and their time;
  - TLS handshakes by result (one completed, one refused);
  - `moat ctl events`: the auth failures with their client id, newest last, --limit,
    --kind, and the refusal of an unknown kind or a bad limit.
"""
import json
import math
import re
import ssl
import subprocess
import threading

import paho.mqtt.client as mqtt

from authlib import client_ctx, moat_passwd, paho_attempt, tls_listener
from moatlib import MOAT, Broker, wait_for
from test_admin import admin  # noqa: F401  (a fixture)
from test_persistence import stop, subscribe
from tls_pki import pki  # noqa: F401  (a fixture)

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
                    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*)?\})? (\S+)$')
TYPES = {"counter", "gauge", "summary", "histogram", "untyped"}


def parse_metrics(text):
    """{(name, labels): value} of a Prometheus text exposition, checked as it is read:
    labels is the label text without braces ("" for none)."""
    helps, types, out = set(), {}, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helps, "two HELP lines for " + name
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            assert typ in TYPES and name not in types, line
            types[name] = typ
            continue
        assert not line.startswith("#"), line
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels, value = m.group(1), (m.group(2) or "{}")[1:-1], float(m.group(3))
        family = name
        if name not in types:
            family = re.sub(r"_(sum|count|bucket)$", "", name)
        assert family in types and family in helps, "no HELP/TYPE before " + line
        assert (name, labels) not in out, "sample twice: " + line
        assert not math.isnan(value)
        out[(name, labels)] = value
    return out


def metrics(sock):
    r = subprocess.run([MOAT, "ctl", "-s", str(sock), "metrics"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return parse_metrics(r.stdout)


def events(sock, *args, expect=0):
    r = subprocess.run([MOAT, "ctl", "-s", str(sock), "--json", "events"] + list(args),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == expect, r.stdout + r.stderr
    return json.loads(r.stdout)["events"] if expect == 0 else r.stderr


def delta(after, before, name, labels=""):
    return after.get((name, labels), 0) - before.get((name, labels), 0)


def v4(port, cid, clean=True):
    c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv311, clean_session=clean)
    c.got = []
    c.lock = threading.Lock()

    def on_message(cl, u, m):
        with c.lock:
            c.got.append(m.payload)
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert wait_for(c.is_connected, 5)
    return c


def publish_all(c, topic, payloads, qos):
    for p in payloads:
        c.publish(topic, p, qos=qos).wait_for_publish(5)


def test_metrics_count_what_clients_do(admin, tmp_path):  # noqa: F811
    pw = tmp_path / "passwd"
    moat_passwd("-c", "-b", pw, "alice", "right")
    a = admin("password_file %s\nmessage_size_limit 64\n" % pw)
    before = metrics(a.sock)
    assert before[("moat_build_info", 'version="%s"' % a.ctl("status")["version"])] == 1
    assert before[("moat_store_key_generation", "")] == 1
    assert before[("moat_clients_connected", "")] == 0

    sub = v4(a.port, "m-sub")
    subscribe(sub, "m/#", 2)
    pub = v4(a.port, "m-pub")
    sent = {0: [b"q0-%d" % i for i in range(3)], 1: [b"q1-%d" % i for i in range(4)],
            2: [b"q2-%d" % i for i in range(2)]}
    for qos, ps in sent.items():
        publish_all(pub, "m/t", ps, qos)
    assert wait_for(lambda: len(sub.got) == 9, 10), sub.got
    publish_all(pub, "m/big", [b"x" * 100], 1)  # over message_size_limit: dropped

    # authentication: alice in with her password, then twice with a wrong one
    rc, good = paho_attempt(a.port, 4, username="alice", password="right", client_id="m-alice")
    assert rc == 0
    good.stop()
    for cid in ("m-bad-1", "m-bad-2"):
        rc, _ = paho_attempt(a.port, 4, username="alice", password="wrong", client_id=cid)
        assert rc == 4  # 3.1.1: bad user name or password

    after = metrics(a.sock)
    for qos, ps in sent.items():
        q = 'qos="%d"' % qos
        extra = 1 if qos == 1 else 0  # the dropped one was received all the same
        assert delta(after, before, "moat_messages_received_total", q) == len(ps) + extra
        assert delta(after, before, "moat_messages_sent_total", q) == len(ps)
    assert delta(after, before, "moat_messages_dropped_total",
                 'reason="message_size_limit"') == 1
    dropped = sum(v for (n, _), v in after.items() if n == "moat_messages_dropped_total")
    assert dropped == 1
    assert delta(after, before, "moat_connections_total") == 3
    assert after[("moat_clients_connected", "")] == 2
    assert delta(after, before, "moat_auth_total", 'method="anonymous",result="success"') == 2
    assert delta(after, before, "moat_auth_total", 'method="password",result="success"') == 1
    assert delta(after, before, "moat_auth_total", 'method="password",result="failure"') == 2
    assert delta(after, before, "moat_security_events_total", 'kind="auth_failure"') == 2
    assert delta(after, before, "moat_security_events_total", 'kind="auth_success"') == 3
    assert after[("moat_bytes_received_total", "")] > before.get(("moat_bytes_received_total",
                                                                  ""), 0)
    assert after[("moat_bytes_sent_total", "")] > 0
    assert after[("moat_uptime_seconds", "")] >= 0
    # the store: every commit timed
    assert after[("moat_store_commit_seconds_count", "")] == after[("moat_store_commits_total",
                                                                    "")]
    assert after[("moat_store_commit_seconds_sum", "")] >= 0
    assert after[("moat_store_failed_total", "")] == 0

    # events: the failures with their client ids, newest last
    ev = events(a.sock, "--kind", "auth_failure")
    assert [e["client_id"] for e in ev] == ["m-bad-1", "m-bad-2"], ev
    assert all(e["kind"] == "auth_failure" and e["username"] == "alice" and
               e["method"] == "password" and e["ts"] for e in ev)
    last = events(a.sock, "--limit", "1")
    assert len(last) == 1
    everything = events(a.sock, "--limit", "1000")
    assert last[0] == everything[-1]
    assert {"auth_success", "auth_failure"} <= {e["kind"] for e in everything}
    assert "connection_opened" not in {e["kind"] for e in everything}
    assert "not a security event kind" in events(a.sock, "--kind", "nope", expect=1)
    assert "limit" in events(a.sock, "--limit", "1001", expect=1)
    assert events(a.sock, "--limit", "0") == []

    # an offline persistent session: what it misses is queued
    q = v4(a.port, "m-queue", clean=False)
    subscribe(q, "q/#", 1)
    stop(q)
    assert wait_for(lambda: metrics(a.sock)[("moat_clients_connected", "")] == 2, 5)
    publish_all(pub, "q/t", [b"a", b"b", b"c"], 1)
    m = metrics(a.sock)
    assert m[("moat_queued_messages", "")] == 3
    assert m[("moat_sessions", "")] >= 3
    # and the store wrote them
    assert m[("moat_store_writes_total", "")] > after[("moat_store_writes_total", "")]
    assert m[("moat_store_commits_total", "")] > after[("moat_store_commits_total", "")]

    # bans
    a.ctl("ban", "--address", "192.0.2.7")
    assert metrics(a.sock)[("moat_bans", "")] == 1
    stop(sub, pub)


def test_tls_handshakes(pki, tmp_path):  # noqa: F811
    sock = tmp_path / "admin.sock"
    b = Broker(config=tls_listener(pki) + "admin_socket %s\n" % sock)
    try:
        assert wait_for(sock.exists, 10)
        before = metrics(sock)
        # one handshake completes (and an MQTT session with it)
        rc, c = paho_attempt(b.port, 4, ctx=client_ctx(pki), client_id="m-tls")
        assert rc == 0
        c.stop()
        # one does not: the client does not trust the server's CA
        bad = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        rc, _ = paho_attempt(b.port, 4, ctx=bad, client_id="m-tls-bad")
        assert rc is None

        def moved():
            m = metrics(sock)
            return (delta(m, before, "moat_tls_handshakes_total", 'result="success"'),
                    delta(m, before, "moat_tls_handshakes_total", 'result="failure"'))
        assert wait_for(lambda: moved() == (1, 1), 5), moved()
        # no persistence: no store metrics
        assert not any(n.startswith("moat_store_") for n, _ in metrics(sock))
    finally:
        assert b.stop() == 0, b.output()[-3000:]
        b.check_clean()
