"""Smoke: moatd starts, a paho 3.1.1 and a paho 5.0 client exchange a message, moatd stops cleanly."""
import threading

import paho.mqtt.client as mqtt
from moatlib import broker  # noqa: F401  (fixture)


def test_pub_sub_mixed_versions(broker):
    got = []
    done = threading.Event()

    sub = mqtt.Client(client_id="sub5", protocol=mqtt.MQTTv5)
    sub.on_message = lambda c, u, m: (got.append((m.topic, m.payload, m.qos)), done.set())
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("smoke/#", qos=1)
    sub.loop_start()
    try:
        pub = mqtt.Client(client_id="pub311", protocol=mqtt.MQTTv311)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        import time
        time.sleep(0.3)
        pub.publish("smoke/a", b"hello", qos=1).wait_for_publish()
        assert done.wait(5), broker.output()
        assert got == [("smoke/a", b"hello", 1)]
        pub.disconnect()
        pub.loop_stop()
    finally:
        sub.disconnect()
        sub.loop_stop()
