"""MQTT 5.0 features end to end, with paho-mqtt (MQTTv5) and, where the bytes matter (paho resolves
topic aliases and hides flow control), the raw client.

Waiting without sleeping for time to pass (message expiry): the broker publishes
`$SYS/broker/uptime` on every tick when sys_interval = 1, and ticks run at least one second apart
(a repeated task with a one-second delay between runs). A test that needs "more than a second
since the broker stored message M" publishes M at QoS 1 (so the broker has stored it when PUBACK
arrives), then subscribes to the uptime topic and waits for two live (non-retained) updates: the
first is published at a tick after M was stored, the second at least a second after the first.
"""
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions
import pytest

import raw_client as raw
from mqtt_helpers import TIMEOUT, Client, v5_properties

PUBACK, PUBREC, PUBREL, PUBCOMP, PINGRESP, DISCONNECT = 0x40, 0x50, 0x62, 0x70, 0xD0, 0xE0
PINGREQ = b"\xC0\x00"
REASON_STRING = 0x1F
TOPIC_ALIAS = 0x23
MESSAGE_EXPIRY = 0x02
SYS_TICKS = "[mqtt]\nsys_interval = 1\n"


def v5(broker, client_id="", clean=True, properties=None, **kwargs):
    c = Client(broker, client_id=client_id, protocol=mqtt.MQTTv5, clean=clean)
    c.connect(properties=properties, **kwargs)
    return c


def publish_props(**values):
    return v5_properties(PacketTypes.PUBLISH, **values)


def prop(properties, ident):
    """The values of one property in a raw property list."""
    return [value for i, value in properties if i == ident]


def ping(client):
    """PINGREQ → PINGRESP on a raw client; returns the packets that came before the PINGRESP
    (everything the broker had written to this client when it handled the PINGREQ)."""
    client.send(PINGREQ)
    before = []
    while True:
        first, body = client.read_packet()
        if first == PINGRESP:
            return before
        before.append((first, body))


def wait_more_than_a_second(broker):
    """Returns once more than a second has passed on the broker's clock since this call (see the
    module docstring): two live $SYS/broker/uptime updates."""
    observer = v5(broker)
    observer.subscribe("$SYS/broker/uptime", 0)
    live = 0
    for _ in range(10):
        msg = observer.message()
        if not msg.retain:
            live += 1
            if live == 2:
                observer.disconnect()
                return
    raise AssertionError("no $SYS/broker/uptime updates")


def offline_subscriber(broker, client_id, topic_filter, qos=1):
    """A 5.0 session (expiry 300 s) subscribed to `topic_filter`, then disconnected. Raw, so that
    the broker has certainly processed the DISCONNECT (it closes the connection after it)."""
    sub = raw.connect_v5(broker, client_id, properties=raw.props(b"\x11\x00\x00\x01\x2c"))
    sub.send(raw.subscribe(topic_filter, options=qos))
    assert sub.read_packet()[0] == 0x90
    sub.send(b"\xE0\x00")
    assert sub.read_until_closed() == []


def resume(broker, client_id):
    c = Client(broker, client_id=client_id, protocol=mqtt.MQTTv5, clean=False)
    flags, _, _ = c.connect(properties=v5_properties(PacketTypes.CONNECT, SessionExpiryInterval=300))
    assert flags.session_present
    return c


# ---- Topic Alias, client → broker -----------------------------------------------------------

def test_mqtt_3_3_2_12_topic_alias_from_client(broker):
    """[MQTT-3.3.2-12] The broker accepts a Topic Alias up to its announced maximum: PUBLISH with a
    topic and alias 1, then with an empty topic and alias 1; rebinding alias 1; alias 64 (the
    default maximum). The subscriber sees the full topics."""
    sub = v5(broker)
    sub.subscribe("alias/#", 1)
    pub = v5(broker)
    pub.publish("alias/first", b"1", qos=1, properties=publish_props(TopicAlias=1))
    pub.publish("", b"2", qos=1, properties=publish_props(TopicAlias=1))
    pub.publish("alias/second", b"3", qos=1, properties=publish_props(TopicAlias=1))
    pub.publish("", b"4", qos=1, properties=publish_props(TopicAlias=1))
    pub.publish("alias/max", b"5", qos=0, properties=publish_props(TopicAlias=64))
    pub.publish("", b"6", qos=1, properties=publish_props(TopicAlias=64))
    got = [(m.topic, m.payload) for m in (sub.message() for _ in range(6))]
    assert got == [("alias/first", b"1"), ("alias/first", b"2"), ("alias/second", b"3"),
                   ("alias/second", b"4"), ("alias/max", b"5"), ("alias/max", b"6")]
    sub.no_message()


def test_mqtt_3_3_2_9_topic_alias_above_maximum(broker_factory):
    """[MQTT-3.3.2-9] With topic_alias_maximum = 5 announced in CONNACK, a PUBLISH with Topic Alias
    6 gets DISCONNECT 0x94 (Topic Alias invalid); another client keeps being served."""
    broker = broker_factory(config_text="[mqtt]\ntopic_alias_maximum = 5\n")
    other = v5(broker)
    other.subscribe("alias/#", 1)
    pub = Client(broker, protocol=mqtt.MQTTv5)
    _, _, props = pub.connect()
    assert props.TopicAliasMaximum == 5
    pub.publish("alias/t", b"x", qos=1, properties=publish_props(TopicAlias=6), wait=False)
    rc, _ = pub.disconnects.get(timeout=TIMEOUT)
    assert rc.value == 0x94
    pub.client.loop_stop()
    other.no_message()
    other.publish("alias/ok", b"fine", qos=1)
    assert other.message().payload == b"fine"


def test_mqtt_3_2_2_18_topic_alias_maximum_0_means_none(broker_factory):
    """[MQTT-3.2.2-18] topic_alias_maximum = 0: CONNACK carries no Topic Alias Maximum, and a
    Topic Alias is refused with DISCONNECT 0x94."""
    broker = broker_factory(config_text="[mqtt]\ntopic_alias_maximum = 0\n")
    c = raw.RawClient(broker)
    c.send(raw.connect("noalias", version=5))
    first, body = c.read_packet()
    properties, _ = raw.parse_properties(body, 2)
    assert (first, body[1]) == (0x20, 0)
    assert prop(properties, 0x22) == []
    c.send(raw.publish("a/t", b"x", properties=raw.props(b"\x23\x00\x01")))
    assert [(f, b[0]) for f, b in c.read_until_closed()] == [(DISCONNECT, 0x94)]


def test_topic_alias_unknown_is_protocol_error(broker):
    """(3.3.2.3.4) An empty topic with an alias the client never set is a Protocol Error:
    DISCONNECT 0x82."""
    c = raw.connect_v5(broker, "unknown-alias")
    c.send(raw.publish("", b"x", properties=raw.props(b"\x23\x00\x03")))
    assert [(f, b[0]) for f, b in c.read_until_closed()] == [(DISCONNECT, 0x82)]


def test_mqtt_3_3_2_7_aliases_not_carried_to_next_connection(broker):
    """[MQTT-3.3.2-7] Topic Alias mappings end with the connection: alias 1 set on one connection
    is unknown on the next one of the same session (DISCONNECT 0x82)."""
    c = raw.connect_v5(broker, "alias-session", properties=raw.props(b"\x11\x00\x00\x01\x2c"))
    c.send(raw.publish("alias/t", b"x", qos=1, properties=raw.props(b"\x23\x00\x01")))
    assert c.read_packet()[0] == PUBACK
    c.send(b"\xE0\x00")
    assert c.read_until_closed() == []
    c = raw.RawClient(broker)
    c.send(raw.connect("alias-session", version=5, flags=0x00, properties=raw.props(b"\x11\x00\x00\x01\x2c")))
    first, body = c.read_packet()
    assert (first, body[0], body[1]) == (0x20, 0x01, 0x00)  # session present
    c.send(raw.publish("", b"y", properties=raw.props(b"\x23\x00\x01")))
    assert [(f, b[0]) for f, b in c.read_until_closed()] == [(DISCONNECT, 0x82)]


# ---- Topic Alias, broker → client -----------------------------------------------------------

def test_mqtt_3_1_2_26_broker_assigns_topic_aliases(broker):
    """[MQTT-3.1.2-26][MQTT-3.3.2-11] A subscriber announcing Topic Alias Maximum 2: the second
    message on a topic arrives with an empty topic and the alias set by the first; no alias is
    above 2; every PUBLISH resolves to the topic it was published on (read raw, as paho resolves
    aliases itself)."""
    sub = raw.connect_v5(broker, "alias-sub", properties=raw.props(b"\x22\x00\x02"))
    sub.send(raw.subscribe("ta/#", options=0))
    assert sub.read_packet()[0] == 0x90
    pub = v5(broker)
    sent = ["ta/a", "ta/a", "ta/b", "ta/b", "ta/c", "ta/c", "ta/a"]
    for i, topic in enumerate(sent):
        pub.publish(topic, str(i).encode(), qos=1)
    aliases = {}
    received = []
    for _ in sent:
        p = raw.parse_publish(*sub.read_packet())
        (alias,) = prop(p["properties"], TOPIC_ALIAS) or [None]
        if alias is not None:
            assert 1 <= alias <= 2
            if p["topic"]:
                aliases[alias] = p["topic"]
            else:
                assert alias in aliases, "alias used before it was set"
        else:
            assert p["topic"], "empty topic without an alias"
        received.append(((p["topic"] or aliases[alias]).decode(), p["payload"], p["topic"], alias))
    assert [(t, pl) for t, pl, _, _ in received] == [(t, str(i).encode()) for i, t in enumerate(sent)]
    # The second message on ta/a is sent by alias alone.
    assert received[0][2] == b"ta/a" and received[0][3] is not None
    assert received[1][2] == b"" and received[1][3] == received[0][3]
    assert ping(sub) == []


def test_mqtt_3_1_2_27_no_topic_alias_without_maximum(broker):
    """[MQTT-3.1.2-27] A subscriber that announces no Topic Alias Maximum never gets an alias."""
    sub = raw.connect_v5(broker, "plain-sub")
    sub.send(raw.subscribe("ta/#", options=0))
    assert sub.read_packet()[0] == 0x90
    pub = v5(broker)
    for _ in range(3):
        pub.publish("ta/same", b"x", qos=1)
    for _ in range(3):
        p = raw.parse_publish(*sub.read_packet())
        assert p["topic"] == b"ta/same"
        assert prop(p["properties"], TOPIC_ALIAS) == []


# ---- Message Expiry Interval -----------------------------------------------------------------

def test_mqtt_3_3_2_6_expiry_forwarded(broker):
    """[MQTT-3.3.2-6] A message with Message Expiry Interval 60 delivered at once carries an expiry
    of at most 60 (the received value minus the time it waited)."""
    sub = v5(broker)
    sub.subscribe("exp/#", 1)
    pub = v5(broker)
    pub.publish("exp/now", b"x", qos=1, properties=publish_props(MessageExpiryInterval=60))
    msg = sub.message()
    assert 1 <= msg.properties.MessageExpiryInterval <= 60


def test_mqtt_3_3_2_6_expiry_decremented_while_queued(broker_factory):
    """[MQTT-3.3.2-6] A message with expiry 60 that waited more than a second for an offline
    session is forwarded with an expiry below 60."""
    broker = broker_factory(config_text=SYS_TICKS)
    offline_subscriber(broker, "waiting", "exp/#")
    pub = v5(broker)
    pub.publish("exp/queued", b"x", qos=1, properties=publish_props(MessageExpiryInterval=60))
    wait_more_than_a_second(broker)
    sub = resume(broker, "waiting")
    msg = sub.message()
    assert msg.payload == b"x"
    assert 1 <= msg.properties.MessageExpiryInterval <= 59


def test_mqtt_3_3_2_6_retained_expiry_decremented(broker_factory):
    """[MQTT-3.3.2-6] A retained message with expiry 60 sent to a new subscriber more than a second
    later carries an expiry below 60."""
    broker = broker_factory(config_text=SYS_TICKS)
    pub = v5(broker)
    pub.publish("exp/retained", b"r", qos=1, retain=True, properties=publish_props(MessageExpiryInterval=60))
    wait_more_than_a_second(broker)
    sub = v5(broker)
    sub.subscribe("exp/retained", 1)
    msg = sub.message()
    assert msg.retain
    assert 1 <= msg.properties.MessageExpiryInterval <= 59


def test_mqtt_3_3_2_5_expired_message_not_delivered(broker_factory):
    """[MQTT-3.3.2-5] A message queued for an offline session whose expiry (1 s) passes before the
    session reconnects is never delivered; a message without expiry queued after it is."""
    broker = broker_factory(config_text=SYS_TICKS)
    offline_subscriber(broker, "late", "exp/#")
    pub = v5(broker)
    pub.publish("exp/t", b"short-lived", qos=1, properties=publish_props(MessageExpiryInterval=1))
    pub.publish("exp/t", b"lasting", qos=1)
    wait_more_than_a_second(broker)
    sub = resume(broker, "late")
    assert sub.message().payload == b"lasting"
    sub.no_message()


def test_mqtt_3_3_2_5_expired_retained_message_not_sent(broker_factory):
    """[MQTT-3.3.2-5] A retained message whose expiry has passed is not sent to a new subscriber."""
    broker = broker_factory(config_text=SYS_TICKS)
    pub = v5(broker)
    pub.publish("exp/r/short", b"short-lived", qos=1, retain=True, properties=publish_props(MessageExpiryInterval=1))
    pub.publish("exp/r/long", b"lasting", qos=1, retain=True)
    wait_more_than_a_second(broker)
    sub = v5(broker)
    sub.subscribe("exp/r/#", 1)
    assert sub.message().payload == b"lasting"
    sub.no_message()


# ---- Maximum Packet Size toward the client ----------------------------------------------------

def test_mqtt_3_1_2_25_maximum_packet_size_toward_client(broker):
    """[MQTT-3.1.2-24][MQTT-3.1.2-25] A client announcing Maximum Packet Size 100: a message with a
    200-byte payload is dropped for it (never sent), a small one arrives; another subscriber with
    no limit gets both."""
    small = v5(broker, properties=v5_properties(PacketTypes.CONNECT, MaximumPacketSize=100))
    small.subscribe("mps/#", 1)
    big = v5(broker)
    big.subscribe("mps/#", 1)
    pub = v5(broker)
    pub.publish("mps/t", b"x" * 200, qos=1)
    pub.publish("mps/t", b"small", qos=1)
    assert small.message().payload == b"small"
    small.no_message()
    assert [big.message().payload for _ in range(2)] == [b"x" * 200, b"small"]


# ---- Payload Format Indicator, properties forwarded --------------------------------------------

def test_payload_format_invalid_puback_0x99(broker):
    """(3.3.2.3.2) Payload Format Indicator 1 with a payload that is not UTF-8: PUBACK 0x99 (Payload
    format invalid); nothing is delivered; the publisher stays connected."""
    sub = v5(broker)
    sub.subscribe("pfi/#", 1)
    pub = v5(broker)
    pub.publish("pfi/t", b"\xff\xfe not utf-8", qos=1, properties=publish_props(PayloadFormatIndicator=1))
    _, rc, _ = pub.published.get(timeout=TIMEOUT)
    assert rc.value == 0x99
    sub.no_message()
    pub.publish("pfi/t", "valid ✓".encode(), qos=1, properties=publish_props(PayloadFormatIndicator=1))
    msg = sub.message()
    assert (msg.payload, msg.properties.PayloadFormatIndicator) == ("valid ✓".encode(), 1)


def test_payload_format_invalid_qos0_disconnect_0x99(broker):
    """(3.3.2.3.2) At QoS 0 there is no PUBACK to carry 0x99: DISCONNECT 0x99."""
    c = raw.connect_v5(broker, "pfi0")
    c.send(raw.publish("pfi/t", b"\xc3\x28", properties=raw.props(b"\x01\x01")))
    assert [(f, b[0]) for f, b in c.read_until_closed()] == [(DISCONNECT, 0x99)]


def test_mqtt_3_3_2_15_to_20_properties_forwarded_unchanged(broker):
    """[MQTT-3.3.2-4][MQTT-3.3.2-15][MQTT-3.3.2-16][MQTT-3.3.2-17][MQTT-3.3.2-18][MQTT-3.3.2-20]
    Payload Format Indicator, Response Topic, Correlation Data, Content Type and User Properties
    (in order, repeated names kept) reach the subscriber unaltered."""
    sub = v5(broker)
    sub.subscribe("props/#", 1)
    pub = v5(broker)
    user = [("b", "1"), ("a", "2"), ("b", "3"), ("ü", "✓")]
    pub.publish("props/t", b"{}", qos=1, properties=publish_props(
        PayloadFormatIndicator=1, ResponseTopic="reply/here", CorrelationData=b"\x00\x01corr\xff",
        ContentType="application/json", UserProperty=user))
    msg = sub.message()
    p = msg.properties
    assert p.PayloadFormatIndicator == 1
    assert p.ResponseTopic == "reply/here"
    assert p.CorrelationData == b"\x00\x01corr\xff"
    assert p.ContentType == "application/json"
    assert p.UserProperty == user


def test_mqtt_3_3_2_15_properties_kept_for_retained(broker):
    """[MQTT-3.3.2-15][MQTT-3.3.2-16][MQTT-3.3.2-17][MQTT-3.3.2-20] The properties survive storage:
    a retained message sent to a later subscriber keeps them."""
    pub = v5(broker)
    pub.publish("props/kept", b"r", qos=1, retain=True, properties=publish_props(
        ResponseTopic="reply/r", CorrelationData=b"id", ContentType="text/plain", UserProperty=[("k", "v")]))
    sub = v5(broker)
    sub.subscribe("props/kept", 1)
    p = sub.message().properties
    assert (p.ResponseTopic, p.CorrelationData, p.ContentType, p.UserProperty) == ("reply/r", b"id", "text/plain", [("k", "v")])


# ---- Subscription Identifiers ------------------------------------------------------------------

def subscribe_with_id(client, topic_filter, identifier, qos=1):
    properties = v5_properties(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=identifier) if identifier else None
    assert [rc.value for rc in client.subscribe(topic_filter, qos, properties=properties)] == [qos]


def test_mqtt_3_3_4_3_subscription_identifiers(broker):
    """[MQTT-3.3.4-3][MQTT-3.3.4-4] One copy per session carrying the identifier of every matching
    subscription that has one: overlapping `sid/+` (1) and `sid/#` (2) both; `sid/#` alone for a
    deeper topic; a matching subscription without identifier adds none."""
    sub = v5(broker)
    subscribe_with_id(sub, "sid/+", 1)
    subscribe_with_id(sub, "sid/#", 2)
    subscribe_with_id(sub, "sid/x", None)
    pub = v5(broker)
    pub.publish("sid/x", b"both", qos=1)
    pub.publish("sid/y/z", b"deep", qos=1)
    first, second = sub.message(), sub.message()
    assert first.payload == b"both" and sorted(first.properties.SubscriptionIdentifier) == [1, 2]
    assert second.payload == b"deep" and second.properties.SubscriptionIdentifier == [2]
    sub.no_message()


def test_mqtt_3_3_4_5_identifier_per_session(broker):
    """[MQTT-3.3.4-5] Each session gets the identifier of its own subscription; one without an
    identifier gets none."""
    a = v5(broker)
    subscribe_with_id(a, "sid/#", 7)
    b = v5(broker)
    subscribe_with_id(b, "sid/#", 268435455)  # the largest identifier
    c = v5(broker)
    subscribe_with_id(c, "sid/#", None)
    pub = v5(broker)
    pub.publish("sid/t", b"x", qos=1)
    assert a.message().properties.SubscriptionIdentifier == [7]
    assert b.message().properties.SubscriptionIdentifier == [268435455]
    assert not hasattr(c.message().properties, "SubscriptionIdentifier")


def test_mqtt_3_8_4_3_subscription_identifier_replaced(broker):
    """[MQTT-3.8.4-3] Subscribing again to the same filter replaces the subscription, identifier
    included."""
    sub = v5(broker)
    subscribe_with_id(sub, "sid/r", 3)
    subscribe_with_id(sub, "sid/r", 4)
    pub = v5(broker)
    pub.publish("sid/r", b"x", qos=1)
    assert sub.message().properties.SubscriptionIdentifier == [4]
    sub.no_message()


# ---- No Local ------------------------------------------------------------------------------------

def test_mqtt_3_8_3_3_no_local(broker):
    """[MQTT-3.8.3-3] With No Local, a client's own publications are not sent back to it; others'
    are, and other subscribers get its publications."""
    a = v5(broker, client_id="no-local-a")
    a.subscribe("nl/t", options=SubscribeOptions(qos=1, noLocal=True))
    b = v5(broker, client_id="no-local-b")
    b.subscribe("nl/t", 1)
    a.publish("nl/t", b"from a", qos=1)
    assert b.message().payload == b"from a"
    a.no_message()
    b.publish("nl/t", b"from b", qos=1)
    assert a.message().payload == b"from b"
    assert b.message().payload == b"from b"


def test_mqtt_3_8_3_3_no_local_is_per_subscription(broker):
    """[MQTT-3.8.3-3] No Local is per subscription: an overlapping subscription without it still
    delivers the client's own message, once."""
    a = v5(broker, client_id="overlap")
    a.subscribe("nl/t", options=SubscribeOptions(qos=1, noLocal=True))
    a.subscribe("nl/#", 1)
    a.publish("nl/t", b"own", qos=1)
    assert a.message().payload == b"own"
    a.no_message()


# ---- Request Problem Information ----------------------------------------------------------------

@pytest.mark.parametrize("qos, ack", [(1, PUBACK), (2, PUBREC)])
def test_mqtt_3_1_2_29_request_problem_information_0(broker, qos, ack):
    """[MQTT-3.1.2-29] With Request Problem Information 0 the broker sends no Reason String on a
    PUBACK / PUBREC, even a failing one (0x99); with the default (1) it explains the failure."""
    quiet = raw.connect_v5(broker, "quiet", properties=raw.props(b"\x17\x00"))
    quiet.send(raw.publish("rpi/t", b"\xff", qos=qos, packet_id=5, properties=raw.props(b"\x01\x01")))
    first, body = quiet.read_packet()
    assert (first, body[:3]) == (ack, b"\x00\x05\x99")
    properties, _ = raw.parse_properties(body, 3) if len(body) > 3 else ([], 3)
    assert prop(properties, REASON_STRING) == [] and prop(properties, 0x26) == []

    talkative = raw.connect_v5(broker, "talkative")
    talkative.send(raw.publish("rpi/t", b"\xff", qos=qos, packet_id=6, properties=raw.props(b"\x01\x01")))
    first, body = talkative.read_packet()
    assert (first, body[:3]) == (ack, b"\x00\x06\x99")
    properties, _ = raw.parse_properties(body, 3)
    assert len(prop(properties, REASON_STRING)) == 1


# ---- Receive Maximum ----------------------------------------------------------------------------

def test_mqtt_3_3_4_9_client_receive_maximum_qos1(broker):
    """[MQTT-3.3.4-9] A client announcing Receive Maximum 2 that does not acknowledge has at most 2
    QoS 1 PUBLISH in flight; each PUBACK lets exactly one more through; none is lost. (The PINGREQ
    round trip shows what the broker had sent when it answered.)"""
    sub = raw.connect_v5(broker, "rm-sub", properties=raw.props(b"\x21\x00\x02"))
    sub.send(raw.subscribe("rm/t", options=1))
    assert sub.read_packet()[0] == 0x90
    pub = v5(broker)
    for i in range(5):
        pub.publish("rm/t", str(i).encode(), qos=1)  # each PUBACKed: all five routed
    in_flight = [raw.parse_publish(f, b) for f, b in ping(sub)]
    assert [p["payload"] for p in in_flight] == [b"0", b"1"]
    received = [p["payload"] for p in in_flight]
    while in_flight:
        done = in_flight.pop(0)
        sub.send(raw.ack(PUBACK, done["packet_id"]))
        more = [raw.parse_publish(f, b) for f, b in ping(sub)]
        assert len(more) == (1 if len(received) < 5 else 0)
        in_flight += more
        received += [p["payload"] for p in more]
    assert received == [b"0", b"1", b"2", b"3", b"4"]


def test_mqtt_3_3_4_9_client_receive_maximum_qos2(broker):
    """[MQTT-3.3.4-9] QoS 2: a message stays in the window until PUBCOMP; PUBREC alone (answered by
    PUBREL) lets nothing more through."""
    sub = raw.connect_v5(broker, "rm2-sub", properties=raw.props(b"\x21\x00\x02"))
    sub.send(raw.subscribe("rm/t", options=2))
    assert sub.read_packet()[0] == 0x90
    pub = v5(broker)
    for i in range(3):
        pub.publish("rm/t", str(i).encode(), qos=2)
    first, second = [raw.parse_publish(f, b) for f, b in ping(sub)]
    assert (first["payload"], second["payload"]) == (b"0", b"1")
    sub.send(raw.ack(PUBREC, first["packet_id"]))
    assert ping(sub) == [(PUBREL, first["packet_id"].to_bytes(2, "big"))]
    sub.send(raw.ack(PUBCOMP, first["packet_id"]))
    (third,) = [raw.parse_publish(f, b) for f, b in ping(sub)]
    assert (third["payload"], third["qos"]) == (b"2", 2)


def test_mqtt_3_3_4_7_receive_maximum_exceeded(broker_factory):
    """[MQTT-3.3.4-7] (3.2.2.3.3) With receive_maximum = 2 announced in CONNACK, a client with two
    QoS 2 PUBLISH awaiting PUBREL that sends a third gets DISCONNECT 0x93 (Receive Maximum
    exceeded)."""
    broker = broker_factory(config_text="[mqtt]\nreceive_maximum = 2\n")
    c = raw.RawClient(broker)
    c.send(raw.connect("greedy", version=5))
    first, body = c.read_packet()
    properties, _ = raw.parse_properties(body, 2)
    assert prop(properties, 0x21) == [2]
    for packet_id in (1, 2):
        c.send(raw.publish("rm/in", b"x", qos=2, packet_id=packet_id))
        first, body = c.read_packet()
        assert (first, body[:2]) == (PUBREC, packet_id.to_bytes(2, "big"))  # 0x10: no subscribers
    c.send(raw.publish("rm/in", b"x", qos=2, packet_id=3))
    assert [(f, b[0]) for f, b in c.read_until_closed()] == [(DISCONNECT, 0x93)]


def test_mqtt_3_3_4_7_receive_window_reopens_after_pubcomp(broker_factory):
    """[MQTT-3.3.4-7] Completing an exchange (PUBREL → PUBCOMP) frees its place: with
    receive_maximum = 2 a client that always completes may send any number of QoS 2 messages."""
    broker = broker_factory(config_text="[mqtt]\nreceive_maximum = 2\n")
    sub = v5(broker)
    sub.subscribe("rm/in", 2)
    c = raw.connect_v5(broker, "polite")
    for packet_id in range(1, 6):
        c.send(raw.publish("rm/in", str(packet_id).encode(), qos=2, packet_id=packet_id))
        assert c.read_packet() == (PUBREC, packet_id.to_bytes(2, "big"))
        c.send(raw.ack(PUBREL, packet_id))
        assert c.read_packet() == (PUBCOMP, packet_id.to_bytes(2, "big"))
    assert [sub.message().payload for _ in range(5)] == [b"1", b"2", b"3", b"4", b"5"]


# ---- DISCONNECT with Will Message -------------------------------------------------------------

def test_mqtt_3_14_4_3_disconnect_0x00_discards_will_0x04_keeps_it(broker):
    """(3.14.2.1) DISCONNECT 0x04 "Disconnect with Will Message" (what mosquitto_sub 5.0 sends on
    Ctrl-C): a clean disconnect after which the broker still publishes the will; 0x00 discards it
    [MQTT-3.14.4-3] (sent raw: the broker closes the connection once it has handled it)."""
    watcher = v5(broker)
    watcher.subscribe("will/#", 1)
    leaving = Client(broker, protocol=mqtt.MQTTv5)
    leaving.client.will_set("will/kept", b"bye", qos=1)
    leaving.connect()
    leaving.disconnect(reasoncode=mqtt.ReasonCode(PacketTypes.DISCONNECT, identifier=0x04))
    msg = watcher.message()
    assert (msg.topic, msg.payload) == ("will/kept", b"bye")

    quiet = raw.RawClient(broker)
    will = raw.string("quiet") + b"\x00" + raw.string("will/discarded") + raw.string("bye")
    quiet.send(raw.connect("quiet", version=5, flags=0x02 | 0x04, payload=will))
    assert quiet.read_packet()[0] == 0x20
    quiet.send(b"\xE0\x01\x00")
    assert quiet.read_until_closed() == []
    watcher.no_message()


# ---- Shutdown -------------------------------------------------------------------------------------

def test_sigterm_disconnects_v5_clients_with_0x8b(broker):
    """SIGTERM: every connected 5.0 client receives DISCONNECT 0x8B (Server shutting down) before the
    connection closes, a 3.1.1 client is closed, and the process exits 0."""
    paho_client = v5(broker, client_id="paho-v5")
    raw_v5 = raw.connect_v5(broker, "raw-v5")
    raw_311 = raw.RawClient(broker)
    raw_311.send(raw.connect("raw-311", version=4))
    assert raw_311.read_packet() == (0x20, b"\x00\x00")
    assert broker.terminate() == 0
    rc, _ = paho_client.disconnects.get(timeout=TIMEOUT)
    assert rc.value == 0x8B
    assert [(f, b[0]) for f, b in raw_v5.read_until_closed()] == [(DISCONNECT, 0x8B)]
    assert raw_311.read_until_closed() == []
