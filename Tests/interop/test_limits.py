"""Configured limits: max_packet_size, max_connections, max_queued_messages (with drops counted in
$SYS/broker/messages/dropped), max_topic_levels / max_topic_length, max_subscriptions_per_client."""
import queue

import paho.mqtt.client as mqtt
import pytest

import raw_client as raw
from mqtt_helpers import TIMEOUT, Client

VERSIONS = [pytest.param(mqtt.MQTTv311, id="v311"), pytest.param(mqtt.MQTTv5, id="v5")]


def codes(rcs):
    return [rc.value for rc in rcs]


def echo(client, topic="limits/echo"):
    """A publish/receive round trip: the client is still served."""
    client.subscribe(topic, 1)
    client.publish(topic, b"still served", qos=1)
    msg = client.message()
    assert (msg.topic, msg.payload) == (topic, b"still served")


# ---- max_packet_size ---------------------------------------------------------------------------

PACKET_LIMIT = 1024


@pytest.fixture
def small_packets(broker_factory):
    return broker_factory(config_text=f"[mqtt]\nmax_packet_size = {PACKET_LIMIT}\n")


def publish_of_size(total, topic="big/t"):
    """A 5.0 QoS 0 PUBLISH whose encoded size, fixed header included, is exactly `total` (> 130)."""
    body = total - 3  # first byte + two-byte Remaining Length
    payload = b"x" * (body - (2 + len(topic)) - 1)  # topic string, empty property block
    data = raw.publish(topic, payload)
    assert len(data) == total
    return data


def test_mqtt_3_2_2_15_max_packet_size_announced(small_packets):
    """[MQTT-3.2.2-15] The limit is announced as Maximum Packet Size in CONNACK."""
    c = Client(small_packets, protocol=mqtt.MQTTv5)
    _, _, props = c.connect()
    assert props.MaximumPacketSize == PACKET_LIMIT
    c.disconnect()


def test_mqtt_3_2_2_15_packet_too_large_v5(small_packets):
    """[MQTT-3.2.2-15] A PUBLISH one byte over max_packet_size: DISCONNECT 0x95 (Packet too large)
    and close; a packet of exactly the limit is accepted; another client keeps being served."""
    other = Client.connected(small_packets, protocol=mqtt.MQTTv5)
    other.subscribe("big/#", 0)

    client = raw.connect_v5(small_packets, "big-sender")
    client.send(publish_of_size(PACKET_LIMIT))
    msg = other.message()
    assert len(msg.payload) == PACKET_LIMIT - 3 - 7 - 1

    client.send(publish_of_size(PACKET_LIMIT + 1))
    packets = client.read_until_closed()
    assert [(first, body[0]) for first, body in packets] == [(0xE0, 0x95)]
    other.no_message()
    echo(other)


def test_mqtt_3_2_2_15_packet_too_large_paho(small_packets):
    """[MQTT-3.2.2-15] paho publishing 2000 bytes to a broker announcing 1024 gets DISCONNECT 0x95."""
    other = Client.connected(small_packets, protocol=mqtt.MQTTv311)
    other.subscribe("big/#", 0)
    big = Client.connected(small_packets, protocol=mqtt.MQTTv5)
    big.publish("big/t", b"x" * 2000, qos=1, wait=False)
    rc, _ = big.disconnects.get(timeout=TIMEOUT)
    assert rc.value == 0x95
    big.client.loop_stop()
    other.no_message()
    echo(other)


def test_max_packet_size_exceeded_v311(small_packets):
    """3.1.1 has no DISCONNECT from the server: a too-large packet closes the connection."""
    other = Client.connected(small_packets, protocol=mqtt.MQTTv311)
    client = raw.RawClient(small_packets)
    client.send(raw.connect("big311", version=4))
    assert client.read_packet() == (0x20, b"\x00\x00")
    client.send(raw.publish("big/t", b"x" * 2000, version=4))
    assert client.read_until_closed() == []
    echo(other)


# ---- max_connections ---------------------------------------------------------------------------

def test_max_connections(broker_factory):
    """With max_connections = 2 a third client is refused: 5.0 CONNACK 0x97 (Quota exceeded), 3.1.1
    return code 0x03 (Server unavailable); once a client has left, a new one gets in."""
    broker = broker_factory(config_text="[mqtt]\nmax_connections = 2\n")
    first = raw.connect_v5(broker, "first")
    second = Client.connected(broker, client_id="second", protocol=mqtt.MQTTv5)

    third = Client(broker, client_id="third", protocol=mqtt.MQTTv5)
    _, rc, _ = third.connect(expect_success=False)
    assert rc.value == 0x97
    third.client.loop_stop()

    third311 = raw.RawClient(broker)
    third311.send(raw.connect("third311", version=4))
    assert third311.read_until_closed() == [(0x20, b"\x00\x03")]

    # The first leaves; the broker has processed its DISCONNECT once it closes the connection.
    first.send(b"\xE0\x00")
    assert first.read_until_closed() == []
    fourth = Client.connected(broker, client_id="fourth", protocol=mqtt.MQTTv311)
    echo(fourth)
    echo(second)


# ---- max_queued_messages -----------------------------------------------------------------------

QUEUE_CONFIG = """\
[mqtt]
max_queued_messages = 2
sys_interval = 1
queue_full_policy = "{policy}"
"""


def wait_for_sys(client, topic, value):
    """Waits for a `$SYS` topic to reach `value` (published every sys_interval)."""
    seen = []
    for _ in range(60):
        msg = client.messages.get(timeout=TIMEOUT)
        if msg.topic == topic:
            seen.append(msg.payload)
            if msg.payload == value:
                return
    raise AssertionError(f"{topic} never became {value!r}: {seen}")


@pytest.mark.parametrize("policy, kept", [("drop_new", [b"m0", b"m1"]), ("drop_oldest", [b"m3", b"m4"])])
def test_max_queued_messages(broker_factory, policy, kept):
    """An offline session queues at most max_queued_messages = 2 messages; of five, three are
    dropped by queue_full_policy and counted in $SYS/broker/messages/dropped."""
    broker = broker_factory(config_text=QUEUE_CONFIG.format(policy=policy))
    slow = Client.connected(broker, client_id="slow", protocol=mqtt.MQTTv311, clean=False)
    slow.subscribe("queue/#", 1)
    slow.disconnect()

    observer = Client.connected(broker, client_id="observer", protocol=mqtt.MQTTv5)
    observer.subscribe("$SYS/broker/messages/dropped", 0)

    pub = Client.connected(broker, protocol=mqtt.MQTTv5)
    for i in range(5):
        pub.publish("queue/t", f"m{i}".encode(), qos=1)
    wait_for_sys(observer, "$SYS/broker/messages/dropped", b"3")

    slow = Client(broker, client_id="slow", protocol=mqtt.MQTTv311, clean=False)
    flags, _, _ = slow.connect()
    assert flags.session_present
    assert [slow.message().payload for _ in kept] == kept
    slow.no_message()


# ---- max_topic_levels / max_topic_length -------------------------------------------------------

TOPIC_CONFIG = "[mqtt]\nmax_topic_levels = 3\nmax_topic_length = 32\n"  # no_message's marker topic fits
TOO_DEEP = "a/b/c/d"
TOO_LONG = "x" * 33


@pytest.fixture
def topic_limits(broker_factory):
    return broker_factory(config_text=TOPIC_CONFIG)


@pytest.mark.parametrize("bad", [TOO_DEEP, TOO_LONG], ids=["levels", "length"])
def test_topic_filter_limits_v5(topic_limits, bad):
    """A filter beyond max_topic_levels / max_topic_length gets SUBACK 0x8F (Topic Filter invalid)
    in its place; the filters at the limit are granted."""
    c = Client.connected(topic_limits, protocol=mqtt.MQTTv5)
    assert codes(c.subscribe([("a/b/c", 1), (bad, 1), ("y" * 32, 0)])) == [1, 0x8F, 0]
    echo(c, "a/b/c")


@pytest.mark.parametrize("bad", [TOO_DEEP, TOO_LONG], ids=["levels", "length"])
def test_topic_filter_limits_v311(topic_limits, bad):
    """3.1.1: a filter beyond the limits gets 0x80."""
    c = Client.connected(topic_limits, protocol=mqtt.MQTTv311)
    assert codes(c.subscribe([("a/b/c", 1), (bad, 1)])) == [1, 0x80]
    echo(c, "a/b/c")


@pytest.mark.parametrize("bad", [TOO_DEEP, TOO_LONG], ids=["levels", "length"])
def test_topic_name_limits_v5_qos1(topic_limits, bad):
    """A QoS 1 PUBLISH to a topic beyond the limits gets PUBACK 0x90 (Topic Name invalid), is not
    delivered, and the connection stays up."""
    sub = Client.connected(topic_limits, protocol=mqtt.MQTTv5)
    sub.subscribe("#", 1)
    pub = Client.connected(topic_limits, protocol=mqtt.MQTTv5)
    assert pub.publish_answer(bad, b"x") == 0x90
    sub.no_message()
    echo(pub, "a/b/c")


@pytest.mark.parametrize("bad", [TOO_DEEP, TOO_LONG], ids=["levels", "length"])
def test_topic_name_limits_v5_qos0(topic_limits, bad):
    """A QoS 0 PUBLISH cannot be answered: DISCONNECT 0x90 and close."""
    sub = Client.connected(topic_limits, protocol=mqtt.MQTTv5)
    sub.subscribe("#", 1)
    client = raw.connect_v5(topic_limits)
    client.send(raw.publish(bad, b"x"))
    assert [(first, body[0]) for first, body in client.read_until_closed()] == [(0xE0, 0x90)]
    sub.no_message()


@pytest.mark.parametrize("bad", [TOO_DEEP, TOO_LONG], ids=["levels", "length"])
def test_topic_name_limits_v311(topic_limits, bad):
    """3.1.1: a PUBLISH beyond the limits closes the connection; nothing is delivered."""
    sub = Client.connected(topic_limits, protocol=mqtt.MQTTv311)
    sub.subscribe("#", 1)
    client = raw.RawClient(topic_limits)
    client.send(raw.connect("deep311", version=4))
    assert client.read_packet() == (0x20, b"\x00\x00")
    client.send(raw.publish(bad, b"x", qos=1, version=4))
    assert client.read_until_closed() == []
    sub.no_message()


# ---- max_subscriptions_per_client --------------------------------------------------------------

@pytest.mark.parametrize("protocol, refused", [(mqtt.MQTTv311, 0x80), (mqtt.MQTTv5, 0x97)], ids=["v311", "v5"])
def test_max_subscriptions_per_client(broker_factory, protocol, refused):
    """With max_subscriptions_per_client = 2 a third filter is refused (5.0: 0x97 Quota exceeded,
    3.1.1: 0x80); replacing an existing subscription still works [MQTT-3.8.4-3], and so does a
    new one once one is removed."""
    broker = broker_factory(config_text="[mqtt]\nmax_subscriptions_per_client = 2\n")
    c = Client.connected(broker, protocol=protocol)
    assert codes(c.subscribe([("s/1", 1), ("s/2", 1), ("s/3", 1)])) == [1, 1, refused]
    assert codes(c.subscribe("s/1", 0)) == [0]
    c.client.unsubscribe("s/2")
    c.unsubacks.get(timeout=TIMEOUT)
    assert codes(c.subscribe("s/3", 1)) == [1]
    c.publish("s/3", b"here", qos=1)
    assert c.message().topic == "s/3"
