"""MQTT over WebSockets and over WebSockets with TLS, against the real moatd.

paho-mqtt's websockets transport (3.1.1 and 5.0, small and 1 MiB payloads), moat pub/sub -w,
mixed TCP and WebSocket clients on one topic, and raw HTTP for what clients will not send:
bad paths, missing upgrade, huge heads, refused origins, X-Forwarded-For from a trusted proxy,
and a broken frame closing only its own connection.
"""
import base64
import hashlib
import os
import socket
import ssl
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from moatlib import MOAT, Broker, free_port, make_broker  # noqa: F401  (fixture)
from tls_pki import pki  # noqa: F401  (fixture)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@pytest.fixture
def wsb(make_broker):
    """A broker with a plain listener, a WebSocket listener, and a strict WebSocket listener."""
    ws, strict = free_port(), free_port()
    b = make_broker(config=(
        "listener %d 127.0.0.1\nprotocol websockets\nallow_anonymous true\n"
        "listener %d 127.0.0.1\nprotocol websockets\nallow_anonymous true\n"
        "websockets_origin https://good.example\nwebsockets_trusted_proxies 127.0.0.1\n"
        % (ws, strict)))
    b.ws, b.strict = ws, strict
    return b


def paho(port, proto, cid, transport="websockets", tls_ca=None):
    c = mqtt.Client(client_id=cid, transport=transport, protocol=proto)
    if transport == "websockets":
        c.ws_set_options(path="/mqtt")
    if tls_ca:
        c.tls_set(ca_certs=tls_ca, cert_reqs=ssl.CERT_REQUIRED)
    c.connect("localhost" if tls_ca else "127.0.0.1", port)
    c.loop_start()
    return c


def exchange(sub_port, pub_port, proto, sub_transport="websockets", pub_transport="websockets",
             tls_ca=None, payloads=(b"hello",)):
    got, done = [], threading.Event()
    sub = paho(sub_port, proto, "sub-%d" % sub_port, sub_transport, tls_ca)
    sub.on_message = lambda c, u, m: (got.append(m.payload),
                                      done.set() if len(got) == len(payloads) else None)
    try:
        time.sleep(0.3)
        sub.subscribe("ws/t", qos=1)
        time.sleep(0.3)
        pub = paho(pub_port, proto, "pub-%d" % pub_port, pub_transport, tls_ca)
        try:
            time.sleep(0.3)
            for p in payloads:
                pub.publish("ws/t", p, qos=1).wait_for_publish(10)
            done.wait(15)
        finally:
            pub.loop_stop()
            pub.disconnect()
    finally:
        sub.loop_stop()
        sub.disconnect()
    return got


@pytest.mark.parametrize("proto", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_paho_over_websockets(wsb, proto):
    big = bytes(range(256)) * 4096
    assert exchange(wsb.ws, wsb.ws, proto, payloads=(b"hello", big)) == [b"hello", big]


def test_websocket_and_tcp_clients_on_one_topic(wsb):
    assert exchange(wsb.port, wsb.ws, mqtt.MQTTv5, sub_transport="tcp") == [b"hello"]
    assert exchange(wsb.ws, wsb.port, mqtt.MQTTv311, pub_transport="tcp") == [b"hello"]


def test_moat_pub_and_sub_over_websockets(wsb):
    sub = subprocess.Popen([MOAT, "sub", "-w", "-h", "127.0.0.1", "-p", str(wsb.ws), "-t", "cli/u",
                            "-C", "1", "-W", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.7)
    r = subprocess.run([MOAT, "pub", "-w", "-h", "127.0.0.1", "-p", str(wsb.ws), "-t", "cli/u",
                        "-m", "through websockets", "-q", "1"], capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr
    out, err = sub.communicate(timeout=15)
    assert sub.returncode == 0, err
    assert out.strip() == b"through websockets"


def test_secure_websockets(pki, make_broker):
    port = free_port()
    make_broker(config=("listener %d 127.0.0.1\nprotocol websockets\nallow_anonymous true\n"
                        "certfile %s\nkeyfile %s\n" % (port, pki.server.cert, pki.server.key)))
    assert exchange(port, port, mqtt.MQTTv5, tls_ca=pki.ca) == [b"hello"]


# ---- raw HTTP and frames ----

def upgrade(path="/mqtt", extra="", key=None):
    key = key or base64.b64encode(os.urandom(16)).decode()
    return key, ("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Protocol: mqtt\r\n%s\r\n" % (path, key, extra)).encode()


def http(port, request):
    """Sends request; returns (head of the answer, socket)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(request)
    head = b""
    try:
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    except socket.timeout:
        pass
    return head, s


def masked(opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    hdr = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else
                                     bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


CONNECT = bytes([0x10, 14, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 2]) + b"xf"


@pytest.mark.parametrize("request_,status", [
    (upgrade("/nope")[1], b"404"),
    (b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n", b"426"),
    (upgrade(extra="X-Pad: %s\r\n" % ("a" * 9000))[1], b"431"),
    (b"POST /mqtt HTTP/1.1\r\nHost: x\r\n\r\n", b"40"),
    (b"\x16\x03\x01\x00\x05hello\r\n\r\n", b"400"),
])
def test_bad_upgrades_are_refused(wsb, request_, status):
    head, s = http(wsb.ws, request_)
    s.close()
    assert head.startswith(b"HTTP/1.1 " + status), head
    assert exchange(wsb.ws, wsb.ws, mqtt.MQTTv311) == [b"hello"]


def test_origin_checked(wsb):
    head, s = http(wsb.strict, upgrade(extra="Origin: https://evil.example\r\n")[1])
    s.close()
    assert head.startswith(b"HTTP/1.1 403"), head
    key, req = upgrade(extra="Origin: https://good.example\r\n")
    head, s = http(wsb.strict, req)
    s.close()
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest())
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"Sec-WebSocket-Accept: " + accept in head
    assert b"Sec-WebSocket-Protocol: mqtt" in head


def test_mqtt_in_binary_frames_and_forwarded_for(wsb):
    _, req = upgrade(extra="Origin: https://good.example\r\nX-Forwarded-For: 203.0.113.5\r\n")
    head, s = http(wsb.strict, req)
    assert head.startswith(b"HTTP/1.1 101")
    s.sendall(masked(2, CONNECT))
    frame = s.recv(64)
    assert frame[:4] == b"\x82\x04\x20\x02", frame
    s.sendall(masked(8, b"\x03\xe8"))  # close 1000
    assert s.recv(64)[:4] == b"\x88\x02\x03\xe8"
    s.close()
    time.sleep(0.3)
    assert "addr=203.0.113.5" in wsb.output()


def test_bad_frames_close_only_their_connection(wsb):
    for bad in (bytes([0x82, 0x05]) + CONNECT[:5],   # unmasked client frame
                masked(1, CONNECT),                   # a text frame
                b"\xff" * 16):                        # garbage
        head, s = http(wsb.ws, upgrade()[1])
        assert head.startswith(b"HTTP/1.1 101")
        s.sendall(bad)
        s.settimeout(5)
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
        assert data[:1] in (b"", b"\x88"), data  # a close frame, or just the close
        assert exchange(wsb.ws, wsb.ws, mqtt.MQTTv5) == [b"hello"]
