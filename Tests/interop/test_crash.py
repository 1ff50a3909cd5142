"""Crash tests (G1, G3): the broker is killed with SIGKILL at random moments and restarted on the
same data; every message the publisher saw acknowledged reaches the subscriber, retained
messages survive, and a QoS 2 flow interrupted after PUBREC completes without a duplicate."""
import random
import signal
import tempfile
import threading

import paho.mqtt.client as mqtt
import pytest

from mqtt_helpers import TIMEOUT, Client
from raw_client import RawClient, connect, packet, string
from stores import store_args, store_params


@pytest.fixture(params=store_params())
def durable(request, broker_factory):
    """Starts brokers on one store; each call is a restart on the same data."""
    data = tempfile.TemporaryDirectory(prefix="starling-crash-")
    args = store_args(request.param, data.name)

    def start():
        return broker_factory(extra_args=args)

    yield start
    data.cleanup()


def kill9(broker):
    broker.process.send_signal(signal.SIGKILL)
    broker.process.wait()


class AckingPublisher:
    """A QoS 1 publisher with a window of 20 that records which payloads were acknowledged."""

    def __init__(self, broker):
        self.acked = set()
        self.lock = threading.Lock()
        self.enough = threading.Event()
        self.target = 0
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="crash-pub",
                                  clean_session=False, protocol=mqtt.MQTTv311)
        self.client._reconnect_on_failure = False
        self.client.max_inflight_messages_set(20)
        self.client.max_queued_messages_set(0)
        self.payload_of = {}
        self.early = set()
        self.client.on_publish = self._on_publish
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert connected.wait(TIMEOUT)

    def _on_publish(self, client, userdata, mid, rc, props):
        with self.lock:
            payload = self.payload_of.get(mid)
            if payload is not None:
                self.acked.add(payload)
            else:
                self.early.add(mid)
            if len(self.acked) >= self.target:
                self.enough.set()

    def publish_until(self, payloads, acked_count):
        """Publishes `payloads` (all of them queued in paho) and returns once `acked_count` of
        everything ever published are acknowledged."""
        self.target = acked_count
        self.enough.clear()
        # paho calls on_publish holding its own locks, so ours is never held while calling paho;
        # an acknowledgement that beats the bookkeeping is matched up afterwards.
        for payload in payloads:
            info = self.client.publish("crash/data", payload, qos=1)
            with self.lock:
                self.payload_of[info.mid] = payload
                if info.mid in self.early:
                    self.acked.add(payload)
        assert self.enough.wait(60), f"only {len(self.acked)} of {acked_count} acknowledged"

    def stop(self):
        self.client.loop_stop()
        try:
            self.client.socket().close()
        except Exception:
            pass


def test_g1_acknowledged_qos1_messages_survive_sigkill_restarts(durable):
    """[G1][G3] Every acknowledged QoS 1 message reaches an offline persistent subscriber across
    several SIGKILL restarts; a retained message survives them too."""
    rng = random.Random(20261126)
    broker = durable()
    sub = Client.connected(broker, client_id="crash-sub", clean=False)
    sub.subscribe("crash/#", qos=1)
    sub.publish("crash/retained", b"kept", qos=1, retain=True)
    sub.disconnect()

    acked = set()
    sent = 0
    for round_ in range(4):
        publisher = AckingPublisher(broker)
        batch = [f"m-{round_}-{i}".encode() for i in range(200)]
        sent += len(batch)
        # Kill after a random number of this round's acknowledgements, with more in flight.
        publisher.publish_until(batch, rng.randrange(20, 180))
        kill9(broker)
        publisher.stop()
        acked |= publisher.acked
        broker = durable()

    sub = Client(broker, client_id="crash-sub", clean=False)
    flags, _, _ = sub.connect()
    assert flags.session_present
    received = set()
    retained = None
    while not acked <= received:
        msg = sub.message(timeout=TIMEOUT)
        if msg.topic == "crash/retained":
            retained = msg.payload
        else:
            received.add(msg.payload)
    assert acked <= received
    assert len(acked) >= 80
    # The retained message survived every restart.
    late = Client.connected(broker, client_id="late")
    late.subscribe("crash/retained", qos=1)
    assert late.message().payload == b"kept"


def test_mqtt_4_3_3_qos2_interrupted_after_pubrec_completes_once(durable):
    """[MQTT-4.3.3-10][G2][G3] A QoS 2 PUBLISH acknowledged with PUBREC, then SIGKILL: after the
    restart the client re-sends PUBLISH (DUP) and PUBREL; the subscriber gets exactly one copy."""
    broker = durable()
    sub = Client.connected(broker, client_id="q2-sub", clean=False)
    sub.subscribe("q2/#", qos=2)
    sub.disconnect()

    pub = RawClient(broker)
    pub.send(connect("q2-pub", version=4, flags=0x00))
    assert pub.read_packet() == (0x20, b"\x00\x00")
    pub.send(packet(0x34, string("q2/t"), b"\x00\x07", b"exactly-once"))
    assert pub.read_packet() == (0x50, b"\x00\x07")  # PUBREC
    kill9(broker)
    pub.close()

    broker = durable()
    pub = RawClient(broker)
    pub.send(connect("q2-pub", version=4, flags=0x00))
    assert pub.read_packet() == (0x20, b"\x01\x00")  # session present
    pub.send(packet(0x3C, string("q2/t"), b"\x00\x07", b"exactly-once"))  # DUP re-send
    assert pub.read_packet() == (0x50, b"\x00\x07")
    pub.send(packet(0x62, b"\x00\x07"))  # PUBREL
    assert pub.read_packet() == (0x70, b"\x00\x07")  # PUBCOMP
    pub.close()

    sub = Client.connected(broker, client_id="q2-sub", clean=False)
    assert sub.message().payload == b"exactly-once"
    sub.no_message()
