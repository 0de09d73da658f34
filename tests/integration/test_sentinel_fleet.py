"""False positives: a thousand normal clients living their life trigger no response.

The sentinel runs with its default thresholds and an empty allow-list (loopback is not
spared), so everything here is counted as it would be from the field. The fleet: 1000
paho MQTT 3.1.1 clients (in five processes) behind 50 addresses (127.0.0.10..59, twenty
devices a site, as behind a NAT), each connecting, subscribing to its command topic and publishing
telemetry every few seconds; then two network blips in which whole sites drop without
DISCONNECT and reconnect within a few seconds, and a few devices reconnect cleanly on
their own. Bounded: about a minute.

Asserted: no ban, no kick, no refusal, no rate limit in the audit log; every client is
connected at the end; every command sent to every device arrives.
"""
import json
import multiprocessing
import random
import resource
import socket
import time

import paho.mqtt.client as mqtt
from moatlib import Broker

SITES = 50
PER_SITE = 20
TELEMETRY_EVERY = 5.0
PROCESSES = 5  # 200 clients each: paho's select() stays under FD_SETSIZE


def audit_kinds(path):
    kinds = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                e = json.loads(line)
                kinds.setdefault(e["kind"], []).append(e)
    return kinds


class Device:
    def __init__(self, site, n, port):
        self.id = "dev-%02d-%02d" % (site, n)
        self.addr = "127.0.0.%d" % (10 + site)
        self.port = port
        self.connected = False
        self.commands = 0
        self.next_telemetry = 0.0
        self.c = mqtt.Client(client_id=self.id, protocol=mqtt.MQTTv311, clean_session=False)
        self.c.on_connect = self.on_connect
        self.c.on_disconnect = self.on_disconnect
        self.c.on_message = self.on_message

    def on_connect(self, c, u, flags, rc):
        assert rc == 0, "%s refused: %d" % (self.id, rc)
        self.connected = True
        c.subscribe("fleet/%s/cmd" % self.id, qos=1)

    def on_disconnect(self, c, u, rc):
        self.connected = False

    def on_message(self, c, u, m):
        self.commands += 1

    def start(self):
        self.c.connect("127.0.0.1", self.port, keepalive=60, bind_address=self.addr)

    def drop(self):
        """The network goes away: no DISCONNECT."""
        try:
            self.c.socket().shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.c.loop(timeout=0.0)
        self.connected = False

    def step(self, now):
        if self.c.socket() is None:
            return
        self.c.loop(timeout=0.0)
        if self.connected and now >= self.next_telemetry:
            self.c.publish("fleet/%s/telemetry" % self.id, b'{"t":21.5}', qos=0)
            self.next_telemetry = now + TELEMETRY_EVERY + random.random()


def run_for(devices, seconds, ops=None):
    end = time.time() + seconds
    while time.time() < end:
        now = time.time()
        for d in devices:
            d.step(now)
        if ops:
            ops(now)
        time.sleep(0.02)


def fleet_part(port, sites, t0, results):
    """One process's share of the fleet, on the common timeline from t0 (paho's select()
    loop cannot hold a thousand clients in one process: FD_SETSIZE)."""
    rnd = random.Random(sites[0])
    devices = [Device(s, n, port) for s in sites for n in range(PER_SITE)]
    try:
        time.sleep(max(0.0, t0 - time.time()))
        # the fleet comes up over ten seconds
        for i, d in enumerate(devices):
            d.start()
            if i % 20 == 19:
                run_for(devices[:i + 1], 10.0 * 20 / len(devices))
        run_for(devices, 6)
        up = sum(d.connected for d in devices)
        # operations: an operator client sends one command to every device
        op = mqtt.Client(client_id="operator-%d" % sites[0], protocol=mqtt.MQTTv311)
        op.max_inflight_messages_set(0)  # no paho-side queue: the broker is what is tested
        op.connect("127.0.0.1", port)
        op.loop_start()
        for d in devices:
            op.publish("fleet/%s/cmd" % d.id, b"reboot-later", qos=1)
        run_for(devices, 5)
        # two blips: one site in five loses its network and comes back 1-3 s later
        for blip in range(2):
            hit = rnd.sample(sites, max(1, len(sites) // 5))
            dropped = [d for d in devices if int(d.id[4:6]) in hit]
            for d in dropped:
                d.drop()
            back_at = {d.id: time.time() + 1 + 2 * rnd.random() for d in dropped}

            def reconnect(now, dropped=dropped, back_at=back_at):
                for d in dropped:
                    if not d.connected and d.c.socket() is None and now >= back_at[d.id]:
                        d.c.reconnect()
            run_for(devices, 6, ops=reconnect)
        # a few devices restart cleanly (DISCONNECT, then connect again)
        for d in rnd.sample(devices, 6):
            d.c.disconnect()
            d.c.loop(timeout=0.0)
            d.c.reconnect()
        run_for(devices, 4)
        # a second command round reaches every device (sessions kept across the blips)
        for d in devices:
            op.publish("fleet/%s/cmd" % d.id, b"status", qos=1)
        run_for(devices, 8)
        results.put((up, [d.id for d in devices if not d.connected],
                     [(d.id, d.commands) for d in devices if d.commands < 2], None))
        for d in devices:
            d.c.disconnect()
        op.disconnect()
        op.loop_stop()
    except Exception as e:  # reported to the test, never swallowed
        results.put((0, [], [], repr(e)))


def test_thousand_normal_clients_trigger_nothing(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    audit = str(tmp_path / "audit.log")
    b = Broker(config="sentinel_allow none\naudit_log %s\n" % audit)
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    parts = [list(range(p, SITES, PROCESSES)) for p in range(PROCESSES)]
    t0 = time.time() + 1
    procs = [ctx.Process(target=fleet_part, args=(b.port, sites, t0, results)) for sites in parts]
    try:
        for p in procs:
            p.start()
        got = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(10)
        errors = [g[3] for g in got if g[3]]
        assert not errors, errors
        assert sum(g[0] for g in got) == SITES * PER_SITE, "not all came up: %r" % [g[0] for g in got]
        missing = [m for g in got for m in g[1]]
        assert not missing, "not connected at the end: %s" % missing[:10]
        short = [x for g in got for x in g[2]]
        assert not short, "commands lost: %s" % short[:10]
        time.sleep(1)  # the sentinel thread writes asynchronously
        kinds = audit_kinds(audit)
        assert len(kinds.get("auth_success", [])) >= SITES * PER_SITE
        assert kinds.get("abnormal_close"), "the blips were not seen"
        for bad in ("banned", "kicked", "ban_hit", "rate_limited", "connection_refused"):
            assert not kinds.get(bad), "%s: %s" % (bad, kinds[bad][:3])
        acted = [e for e in kinds.get("detection", []) if "-> log" not in e.get("reason", "")]
        assert not acted, "a detector acted on a normal fleet: %s" % acted[:3]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        rc = b.stop()
        b.check_clean()
    assert rc == 0
