"""Shared helpers for the sentinel's tests: the audit log, a well-behaved bystander, and
raw connections from the attacker's own loopback address (127.0.0.2; the tests' allow-list
holds only 127.0.0.1)."""
import json
import os
import socket
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from moatlib import Broker, Raw

ATTACKER = "127.0.0.2"


def wait_for(cond, timeout=10, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return cond()


def audit_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def audit_has(path, kind, contains=""):
    return [e for e in audit_lines(path)
            if e.get("kind") == kind and contains in json.dumps(e)]


@pytest.fixture
def sentinel_broker(tmp_path):
    """make(config): a moatd whose allow-list is 127.0.0.1 only, with an audit log (b.audit)."""
    made = []

    def make(config):
        audit = str(tmp_path / "audit.log")
        b = Broker(config="sentinel_allow 127.0.0.1\naudit_log %s\n%s" % (audit, config))
        b.audit = audit
        made.append(b)
        return b

    yield make
    for b in made:
        rc = b.stop()
        b.check_clean()
        assert rc == 0, b.output()[-3000:]


class Bystander:
    """A subscriber and a publisher on 127.0.0.1 exchanging a numbered QoS 1 sequence."""

    def __init__(self, port, topic="plant/status", rate=5):
        self.topic, self.rate, self.port = topic, rate, port
        self.got = []
        self.sent = 0
        self.stop_flag = threading.Event()
        self.sub = mqtt.Client(client_id="bystander-sub", protocol=mqtt.MQTTv311)
        self.sub.on_message = lambda c, u, m: self.got.append(int(m.payload))
        subscribed = threading.Event()
        self.sub.on_subscribe = lambda *a: subscribed.set()
        self.sub.connect("127.0.0.1", port)
        self.sub.loop_start()
        self.sub.subscribe(topic, qos=1)
        assert subscribed.wait(5)
        self.pub = mqtt.Client(client_id="bystander-pub", protocol=mqtt.MQTTv311)
        self.pub.connect("127.0.0.1", port)
        self.pub.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_flag.is_set():
            self.pub.publish(self.topic, str(self.sent), qos=1).wait_for_publish(5)
            self.sent += 1
            time.sleep(1.0 / self.rate)

    def finish(self):
        assert wait_for(lambda: self.sent >= 3, 5), "the bystander hardly ran"
        self.stop_flag.set()
        self.thread.join(10)
        assert wait_for(lambda: len(self.got) >= self.sent, 10), (self.sent, len(self.got))
        assert sorted(set(self.got)) == list(range(self.sent)), "bystander lost messages"
        for c in (self.pub, self.sub):
            c.disconnect()
            c.loop_stop()


def raw_from(port, source=ATTACKER):
    """A Raw connection whose socket is bound to source first."""
    r = Raw.__new__(Raw)
    r.s = socket.socket()
    r.s.bind((source, 0))
    r.s.settimeout(5)
    r.s.connect(("127.0.0.1", port))
    r.buf = b""
    return r


