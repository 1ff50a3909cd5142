"""Protocol violations sent as raw bytes, each answered exactly as the specification says, while a
well-behaved paho client connected beforehand keeps being served.

Every test: a paho 5.0 "bystander" connects and subscribes first; the raw client breaks one rule;
the test asserts the exact answer (CONNACK / DISCONNECT reason code, or a plain close) and then
that the bystander still completes a publish/receive round trip through the broker.
"""
import paho.mqtt.client as mqtt
import pytest

import raw_client as raw
from mqtt_helpers import Client

DISCONNECT = 0xE0
CONNACK = 0x20
MALFORMED = 0x81
PROTOCOL_ERROR = 0x82


@pytest.fixture
def bystander(broker):
    c = Client.connected(broker, client_id="bystander", protocol=mqtt.MQTTv5)
    assert [rc.value for rc in c.subscribe("bystander/echo", 1)] == [1]
    yield c
    c.disconnect()


def assert_still_served(bystander):
    """The bystander's own message comes back: the broker still routes for it."""
    bystander.publish("bystander/echo", b"still here", qos=1)
    msg = bystander.message()
    assert (msg.topic, msg.payload) == ("bystander/echo", b"still here")


def connected(broker, version):
    """A raw client after a successful CONNECT of `version` (4 = 3.1.1, 5 = 5.0)."""
    client = raw.RawClient(broker)
    client.send(raw.connect("violator", version=version))
    first, body = client.read_packet()
    assert first == CONNACK
    assert body[1] == 0x00
    return client


def assert_disconnect(client, reason):
    """The broker sends exactly one DISCONNECT with `reason`, then closes."""
    packets = client.read_until_closed()
    assert len(packets) == 1, packets
    first, body = packets[0]
    assert first == DISCONNECT
    assert body[0] == reason, f"DISCONNECT reason {body[0]:#04x}, expected {reason:#04x}"


def assert_closed_silently(client):
    packets = client.read_until_closed()
    assert packets == [], packets


# ---- CONNECT ---------------------------------------------------------------------------------

def test_mqtt_3_1_0_1_first_packet_not_connect(broker, bystander):
    """[MQTT-3.1.0-1] The first packet must be CONNECT: a PINGREQ first gets the connection
    closed, with no CONNACK (nothing was connected to answer)."""
    client = raw.RawClient(broker)
    client.send(b"\xC0\x00")
    assert_closed_silently(client)
    assert_still_served(bystander)


def test_mqtt_3_1_0_1_first_packet_publish(broker, bystander):
    """[MQTT-3.1.0-1] A PUBLISH before CONNECT is not routed; the connection is closed."""
    client = raw.RawClient(broker)
    client.send(raw.publish("bystander/echo", b"sneaky", version=4))
    assert_closed_silently(client)
    assert_still_served(bystander)  # asserts the first message it gets is its own, not "sneaky"


def test_mqtt_3_1_0_2_second_connect_v5(broker, bystander):
    """[MQTT-3.1.0-2] A second CONNECT is a Protocol Error: DISCONNECT 0x82 and close."""
    client = connected(broker, 5)
    client.send(raw.connect("violator", version=5))
    assert_disconnect(client, PROTOCOL_ERROR)
    assert_still_served(bystander)


def test_mqtt_3_1_0_2_second_connect_v311(broker, bystander):
    """[MQTT-3.1.0-2] 3.1.1: a second CONNECT closes the connection (3.1.1 has no DISCONNECT
    from the server)."""
    client = connected(broker, 4)
    client.send(raw.connect("violator", version=4))
    assert_closed_silently(client)
    assert_still_served(bystander)


def test_mqtt_3_1_2_2_unsupported_protocol_level(broker, bystander):
    """[MQTT-3.1.2-2] Protocol level 6: CONNACK with return code 0x01 (unacceptable protocol
    version) in the 3.1.1 format every version can read, then close."""
    client = raw.RawClient(broker)
    client.send(raw.packet(0x10, raw.string("MQTT"), bytes([6, 0x02, 0, 60, 0]), raw.string("c")))
    packets = client.read_until_closed()
    assert packets == [(CONNACK, b"\x00\x01")]
    assert_still_served(bystander)


def test_mqtt_3_1_2_1_bad_protocol_name(broker, bystander):
    """[MQTT-3.1.2-1] Protocol name "MQTX": the server must not go on as MQTT; it may answer
    CONNACK 0x84 (5.0) and must close. Starling closes without a CONNACK."""
    client = raw.RawClient(broker)
    client.send(raw.packet(0x10, raw.string("MQTX"), bytes([5, 0x02, 0, 60, 0]), raw.string("c")))
    assert_closed_silently(client)
    assert_still_served(bystander)


# ---- Framing and fixed header ------------------------------------------------------------------

def test_mqtt_1_5_5_1_remaining_length_of_five_bytes(broker, bystander):
    """[MQTT-1.5.5-1] A Remaining Length encoded in five bytes is malformed: DISCONNECT 0x81,
    refused before any body is awaited."""
    client = connected(broker, 5)
    client.send(b"\x30\xFF\xFF\xFF\xFF\x01")
    assert_disconnect(client, MALFORMED)
    assert_still_served(bystander)


@pytest.mark.parametrize("what, data", [
    ("SUBSCRIBE flags 0000 [MQTT-3.8.1-1]", raw.packet(0x80, b"\x00\x01", b"\x00", raw.string("a"), b"\x00")),
    ("PUBREL flags 0000 [MQTT-3.6.1-1]", b"\x60\x02\x00\x01"),
    ("PINGREQ flags 0001", b"\xC1\x00"),
])
def test_mqtt_2_1_3_1_reserved_flags(broker, bystander, what, data):
    """[MQTT-2.1.3-1] Reserved fixed-header flags not as listed: malformed, DISCONNECT 0x81."""
    client = connected(broker, 5)
    client.send(data)
    assert_disconnect(client, MALFORMED)
    assert_still_served(bystander)


# ---- PUBLISH -----------------------------------------------------------------------------------

def test_mqtt_3_3_1_4_publish_qos_3_v5(broker, bystander):
    """[MQTT-3.3.1-4] A PUBLISH with both QoS bits set is malformed: DISCONNECT 0x81."""
    client = connected(broker, 5)
    client.send(raw.packet(0x36, raw.string("bystander/echo"), b"\x00\x01", b"\x00", b"x"))
    assert_disconnect(client, MALFORMED)
    assert_still_served(bystander)


def test_mqtt_3_3_1_4_publish_qos_3_v311(broker, bystander):
    """[MQTT-3.3.1-4] 3.1.1: a PUBLISH with QoS 3 closes the connection."""
    client = connected(broker, 4)
    client.send(raw.packet(0x36, raw.string("bystander/echo"), b"\x00\x01", b"x"))
    assert_closed_silently(client)
    assert_still_served(bystander)


def test_mqtt_1_5_4_1_invalid_utf8_topic(broker, bystander):
    """[MQTT-1.5.4-1] A topic of ill-formed UTF-8 is malformed: DISCONNECT 0x81."""
    client = connected(broker, 5)
    client.send(raw.publish(b"bystander/\xFE", b"x"))
    assert_disconnect(client, MALFORMED)
    assert_still_served(bystander)


def test_mqtt_1_5_4_1_invalid_utf8_topic_v311(broker, bystander):
    """[MQTT-1.5.4-1] 3.1.1: a topic of ill-formed UTF-8 closes the connection."""
    client = connected(broker, 4)
    client.send(raw.publish(b"bystander/\xC3\x28", b"x", version=4))
    assert_closed_silently(client)
    assert_still_served(bystander)


def test_mqtt_3_3_2_2_wildcard_in_topic_name(broker, bystander):
    """[MQTT-3.3.2-2] A Topic Name with a wildcard: Protocol Error, DISCONNECT 0x82; nothing is
    delivered to the bystander subscribed to a matching filter."""
    bystander.subscribe("wild/#", 0)
    client = connected(broker, 5)
    client.send(raw.publish("wild/+", b"x"))
    assert_disconnect(client, PROTOCOL_ERROR)
    assert_still_served(bystander)


def test_mqtt_3_3_2_2_wildcard_in_topic_name_v311(broker, bystander):
    """[MQTT-3.3.2-2] 3.1.1: a Topic Name with '#' closes the connection."""
    client = connected(broker, 4)
    client.send(raw.publish("wild/#", b"x", version=4))
    assert_closed_silently(client)
    assert_still_served(bystander)


def test_mqtt_2_2_2_2_property_not_allowed(broker, bystander):
    """[MQTT-2.2.2-2] (section 2.2.2.2) A property not valid for the packet type (Session Expiry
    Interval in a PUBLISH) makes it malformed: DISCONNECT 0x81."""
    client = connected(broker, 5)
    client.send(raw.publish("bystander/echo", b"x", properties=raw.props(b"\x11\x00\x00\x00\x01")))
    assert_disconnect(client, MALFORMED)
    assert_still_served(bystander)


# ---- SUBSCRIBE ---------------------------------------------------------------------------------

def test_mqtt_3_8_3_2_subscribe_without_filters(broker, bystander):
    """[MQTT-3.8.3-2] A SUBSCRIBE with no Topic Filter is a Protocol Error: DISCONNECT 0x82."""
    client = connected(broker, 5)
    client.send(raw.packet(0x82, b"\x00\x01", b"\x00"))
    assert_disconnect(client, PROTOCOL_ERROR)
    assert_still_served(bystander)


def test_mqtt_3_8_3_3_subscribe_without_filters_v311(broker, bystander):
    """[MQTT-3.8.3-3] 3.1.1: a SUBSCRIBE with no payload closes the connection."""
    client = connected(broker, 4)
    client.send(raw.packet(0x82, b"\x00\x01"))
    assert_closed_silently(client)
    assert_still_served(bystander)
