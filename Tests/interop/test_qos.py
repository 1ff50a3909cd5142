"""QoS 0/1/2 flows end to end: paho-mqtt 2.x for delivery, raw bytes where the test must
control acknowledgements and packet ids.

Spec ids are MQTT 5.0 numbering unless a docstring says 3.1.1.
"""
import itertools

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes

from mqtt_helpers import Client, v5_properties
from raw_client import RawClient, ack, connect, parse_publish, props, publish, subscribe

V311, V5 = mqtt.MQTTv311, mqtt.MQTTv5
VERSIONS = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]
RAW_VERSIONS = [pytest.param(4, id="v311"), pytest.param(5, id="v5")]
PUBACK, PUBREC, PUBREL, PUBCOMP = 0x40, 0x50, 0x62, 0x70


def client(broker, client_id="", protocol=V5, clean=True, expiry=None):
    """A connected paho client that does not reconnect by itself; 5.0 with `expiry` sets the
    Session Expiry Interval, 3.1.1 with clean=False keeps its session."""
    c = Client(broker, client_id, protocol=protocol, clean=clean)
    c.client._reconnect_on_failure = False
    properties = None
    if protocol == V5 and expiry is not None:
        properties = v5_properties(PacketTypes.CONNECT, SessionExpiryInterval=expiry)
    c.connect(properties=properties)
    return c


def raw_connect(broker, client_id, version, clean=True, expiry=0):
    """A raw client connected with Clean Start as given (5.0: and the Session Expiry Interval);
    returns (client, session_present)."""
    raw = RawClient(broker)
    p = props(bytes([0x11]) + expiry.to_bytes(4, "big")) if expiry else b"\x00"
    raw.send(connect(client_id, version=version, flags=0x02 if clean else 0x00, properties=p))
    first, body = raw.read_packet()
    assert first == 0x20 and body[1] == 0x00, f"CONNACK {first:#04x} {bytes(body)!r}"
    return raw, bool(body[0] & 1)


def expect(raw, kind):
    """Reads the next packet and checks its type (the first byte's high nibble)."""
    first, body = raw.read_packet()
    assert first >> 4 == kind >> 4, f"expected {kind:#04x}, got {first:#04x} {bytes(body)!r}"
    return first, body


def packet_id(body):
    return int.from_bytes(body[:2], "big")


def stored_subscriber(broker, client_id, topic, qos, version):
    """A raw client with a stored session (expiry 300 s), subscribed to `topic` at `qos`."""
    sub, _ = raw_connect(broker, client_id, version, clean=False, expiry=300)
    sub.send(subscribe(topic, options=qos, packet_id=1, version=version))
    expect(sub, 0x90)
    return sub


def resume(broker, client_id, version):
    """The stored session of `client_id` resumed (session present)."""
    sub, present = raw_connect(broker, client_id, version, clean=False, expiry=300)
    assert present
    return sub


def delivered_then_dropped(sub, pub, topic, payload, qos, version):
    """`pub` publishes; `sub` gets it (DUP 0) and drops its connection without answering."""
    pub.publish(topic, payload, qos=qos)
    original = next_publish(sub, version)
    assert (original["payload"], original["qos"], original["dup"]) == (payload, qos, False)
    sub.close()
    return original


def resent_on_resume(broker, client_id, original, version):
    """The session resumed: the first packet is `original` again, same id, DUP 1 [MQTT-3.3.1-1]."""
    sub = resume(broker, client_id, version)
    again = next_publish(sub, version)
    assert (again["packet_id"], again["payload"], again["qos"], again["dup"]) == (
        original["packet_id"], original["payload"], original["qos"], True)
    return sub, again


def next_publish(raw, version):
    """Reads the next packet, a PUBLISH, parsed."""
    return parse_publish(*expect(raw, 0x30), version)


def expect_pubrel(raw, packet_id_):
    first, body = expect(raw, PUBREL)
    assert first == PUBREL and packet_id(body) == packet_id_


def complete_release(raw, packet_id_):
    """The server's PUBREL for `packet_id_` comes; the client answers PUBCOMP."""
    expect_pubrel(raw, packet_id_)
    raw.send(ack(PUBCOMP, packet_id_))


def assert_next_is(raw, pub, topic, marker, version):
    """Nothing else is (re-)sent: a QoS 0 `marker` published now is the next PUBLISH."""
    pub.publish(topic, marker, qos=0)
    assert next_publish(raw, version)["payload"] == marker


def with_dup(data):
    """Sets the DUP flag of an encoded PUBLISH."""
    return bytes([data[0] | 0x08]) + data[1:]


# --- Delivered QoS --------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", VERSIONS)
@pytest.mark.parametrize("pub_qos,sub_qos", list(itertools.product([0, 1, 2], repeat=2)))
def test_mqtt_3_8_4_8_delivered_qos_is_minimum_of_published_and_granted(broker, protocol, pub_qos, sub_qos):
    """[MQTT-3.8.4-8] (3.1.1: [MQTT-3.8.4-6]) A message published with QoS p to a subscription
    granted QoS s is delivered with QoS min(p, s); the publisher's flow completes (PUBACK /
    PUBREC-PUBREL-PUBCOMP) and the subscriber's (paho acknowledges)."""
    sub = client(broker, "min-sub", protocol)
    assert [rc.value for rc in sub.subscribe("min/t", sub_qos)] == [sub_qos]  # [MQTT-3.9.3-1]
    pub = client(broker, "min-pub", protocol)
    pub.publish("min/t", b"payload", qos=pub_qos)
    msg = sub.message()
    assert (msg.topic, msg.payload, msg.qos, msg.dup) == ("min/t", b"payload", min(pub_qos, sub_qos), False)
    sub.no_message()
    sub.disconnect()
    pub.disconnect()


# --- The flows on the wire, both directions ---------------------------------------------------------

@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_mqtt_4_3_2_4_and_4_3_3_8_server_acknowledges_client_publish(broker, version):
    """Client to server: QoS 1 PUBLISH is answered with PUBACK carrying its packet id
    [MQTT-4.3.2-4]; QoS 2 with PUBREC [MQTT-4.3.3-8], then PUBREL with PUBCOMP [MQTT-4.3.3-11].
    The subscriber (paho) gets each message once."""
    sub = client(broker, "flow-in-sub", V5)
    sub.subscribe("flow/in", 2)
    raw, _ = raw_connect(broker, "flow-in-pub", version)
    raw.send(publish("flow/in", b"q1", qos=1, packet_id=11, version=version))
    first, body = expect(raw, PUBACK)
    assert packet_id(body) == 11 and (len(body) == 2 or body[2] == 0x00)
    raw.send(publish("flow/in", b"q2", qos=2, packet_id=12, version=version))
    first, body = expect(raw, PUBREC)
    assert first == PUBREC and packet_id(body) == 12 and (len(body) == 2 or body[2] == 0x00)
    raw.send(ack(PUBREL, 12))
    first, body = expect(raw, PUBCOMP)
    assert first == PUBCOMP and packet_id(body) == 12 and (len(body) == 2 or body[2] == 0x00)
    got = [sub.message(), sub.message()]
    assert [(m.payload, m.qos) for m in got] == [(b"q1", 1), (b"q2", 2)]
    sub.no_message()
    raw.close()
    sub.disconnect()


@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_mqtt_4_3_2_1_and_4_3_3_1_server_publishes_qos_1_and_2(broker, version):
    """Server to client: QoS 1 is sent as PUBLISH QoS 1, DUP 0, with a non-zero packet id
    [MQTT-4.3.2-1][MQTT-2.2.1-4], done at PUBACK; QoS 2 as PUBLISH QoS 2 DUP 0 [MQTT-4.3.3-1], and
    the server answers PUBREC with PUBREL of the same id [MQTT-4.3.3-3]."""
    raw, _ = raw_connect(broker, "flow-out-sub", version)
    raw.send(subscribe("flow/out", options=2, packet_id=1, version=version))
    expect(raw, 0x90)
    pub = client(broker, "flow-out-pub", V5)
    pub.publish("flow/out", b"one", qos=1)
    m = next_publish(raw, version)
    assert (m["topic"], m["payload"], m["qos"], m["dup"]) == (b"flow/out", b"one", 1, False)
    assert m["packet_id"] != 0
    raw.send(ack(PUBACK, m["packet_id"]))
    pub.publish("flow/out", b"two", qos=2)
    m = next_publish(raw, version)
    assert (m["payload"], m["qos"], m["dup"]) == (b"two", 2, False) and m["packet_id"] != 0
    raw.send(ack(PUBREC, m["packet_id"]))
    complete_release(raw, m["packet_id"])
    assert_next_is(raw, pub, "flow/out", b"marker", version)  # nothing re-sent once the flows are complete
    raw.close()
    pub.disconnect()


# --- Overlapping subscriptions ------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_3_3_4_2_overlapping_subscriptions_deliver_one_copy_at_highest_qos(broker, protocol):
    """[MQTT-3.3.4-2] (3.1.1: [MQTT-3.3.5-1]) A client whose subscriptions overlap gets the
    message once, with the highest QoS of the matching subscriptions."""
    sub = client(broker, "overlap-sub", protocol)
    sub.subscribe("overlap/#", 0)
    sub.subscribe("overlap/+/c", 2)
    sub.subscribe("overlap/b/c", 1)
    pub = client(broker, "overlap-pub", protocol)
    pub.publish("overlap/b/c", b"once", qos=2)
    msg = sub.message()
    assert (msg.payload, msg.qos) == (b"once", 2)
    pub.publish("overlap/b/c", b"qos1", qos=1)
    msg = sub.message()
    assert (msg.payload, msg.qos) == (b"qos1", 1)
    sub.no_message()
    sub.disconnect()
    pub.disconnect()


# --- Offline sessions --------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_4_6_0_5_offline_session_receives_queued_messages_in_order(broker, protocol):
    """[MQTT-3.1.2-5] [MQTT-4.6.0-5] (3.1.1: [MQTT-3.1.2-4] [MQTT-4.6.0-6]) QoS 1 and 2 messages
    published while a persistent session is offline are delivered when it reconnects, with
    their QoS, each QoS in the order published."""
    sub = client(broker, "offline-sub", protocol, clean=False, expiry=300)
    sub.subscribe("offline/t", 2)
    sub.disconnect()
    pub = client(broker, "offline-pub", protocol)
    sent = []
    for i in range(6):
        qos = 1 + i % 2
        pub.publish("offline/t", f"m{i}".encode(), qos=qos)
        sent.append((f"m{i}".encode(), qos))
    sub2 = Client(broker, "offline-sub", protocol=protocol, clean=False)
    sub2.client._reconnect_on_failure = False
    flags, _, _ = sub2.connect(properties=v5_properties(PacketTypes.CONNECT, SessionExpiryInterval=300)
                               if protocol == V5 else None)
    assert flags.session_present
    got = [(m.payload, m.qos) for m in (sub2.message() for _ in sent)]
    for qos in (1, 2):
        assert [g for g in got if g[1] == qos] == [s for s in sent if s[1] == qos]
    assert sorted(got) == sorted(sent)
    sub2.no_message()
    sub2.disconnect()
    pub.disconnect()


# --- Re-delivery on session resume -------------------------------------------------------------------

@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_mqtt_4_4_0_1_unacknowledged_qos_1_resent_with_dup_on_resume(broker, version):
    """[MQTT-4.4.0-1] A QoS 1 PUBLISH the client did not acknowledge is sent again when the
    session resumes (Clean Start 0), with the same packet id and DUP 1 [MQTT-3.3.1-1]. Once
    acknowledged, it is not sent again."""
    sub, present = raw_connect(broker, "redeliver-1", version, clean=False, expiry=300)
    assert not present
    sub.send(subscribe("redeliver/t", options=1, packet_id=1, version=version))
    expect(sub, 0x90)
    pub = client(broker, "redeliver-1-pub", V5)
    original = delivered_then_dropped(sub, pub, "redeliver/t", b"unacked", 1, version)  # no PUBACK

    sub, again = resent_on_resume(broker, "redeliver-1", original, version)
    sub.send(ack(PUBACK, again["packet_id"]))
    assert_next_is(sub, pub, "redeliver/t", b"next", version)
    sub.close()

    sub = resume(broker, "redeliver-1", version)
    assert_next_is(sub, pub, "redeliver/t", b"marker", version)  # nothing re-sent before it
    sub.close()
    pub.disconnect()


@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_mqtt_4_4_0_1_unacknowledged_qos_2_publish_and_pubrel_resent_on_resume(broker, version):
    """[MQTT-4.4.0-1] On resume the server re-sends a QoS 2 PUBLISH not yet PUBREC'd (same id,
    DUP 1 [MQTT-3.3.1-1]) and, once PUBREC'd, a PUBREL not yet PUBCOMP'd (same id)."""
    sub = stored_subscriber(broker, "redeliver-2", "redeliver2/t", 2, version)
    pub = client(broker, "redeliver-2-pub", V5)
    original = delivered_then_dropped(sub, pub, "redeliver2/t", b"exactly", 2, version)  # no PUBREC

    sub, again = resent_on_resume(broker, "redeliver-2", original, version)
    sub.send(ack(PUBREC, again["packet_id"]))
    expect_pubrel(sub, original["packet_id"])
    sub.close()  # no PUBCOMP

    sub = resume(broker, "redeliver-2", version)
    complete_release(sub, original["packet_id"])
    assert_next_is(sub, pub, "redeliver2/t", b"marker", version)
    sub.close()
    pub.disconnect()


# --- QoS 2 exactly once (inbound) ---------------------------------------------------------------------

@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_mqtt_4_3_3_10_resent_qos_2_publish_before_pubrel_not_delivered_twice(broker, version):
    """[MQTT-4.3.3-10] A QoS 2 PUBLISH re-sent (DUP 1, same packet id) before PUBREL is answered
    with PUBREC again and not delivered a second time. After PUBCOMP the id is free: a new
    PUBLISH with it is a new message [MQTT-4.3.3-12]."""
    sub = client(broker, "exactly-once-sub", V5)
    sub.subscribe("exactly/once", 2)
    raw, _ = raw_connect(broker, "exactly-once-pub", version)
    first_publish = publish("exactly/once", b"only once", qos=2, packet_id=42, version=version)
    raw.send(first_publish)
    assert packet_id(expect(raw, PUBREC)[1]) == 42
    raw.send(with_dup(first_publish))
    assert packet_id(expect(raw, PUBREC)[1]) == 42
    raw.send(ack(PUBREL, 42))
    first, body = expect(raw, PUBCOMP)
    assert first == PUBCOMP and packet_id(body) == 42
    msg = sub.message()
    assert (msg.payload, msg.qos) == (b"only once", 2)
    sub.no_message()

    raw.send(publish("exactly/once", b"new message", qos=2, packet_id=42, version=version))
    assert packet_id(expect(raw, PUBREC)[1]) == 42
    raw.send(ack(PUBREL, 42))
    assert packet_id(expect(raw, PUBCOMP)[1]) == 42
    assert sub.message().payload == b"new message"
    sub.no_message()
    raw.close()
    sub.disconnect()


@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_mqtt_4_3_3_10_qos_2_resent_after_reconnect_not_delivered_twice(broker, version):
    """[MQTT-4.3.3-10] [MQTT-4.4.0-1] The inbound QoS 2 state is part of the session: a publisher
    that loses its connection after PUBREC and, resuming the session, re-sends the PUBLISH (DUP
    1, same id) gets PUBREC again and the message is not delivered twice."""
    sub = client(broker, "resume-once-sub", V5)
    sub.subscribe("resume/once", 2)
    raw, _ = raw_connect(broker, "resume-once-pub", version, clean=False, expiry=300)
    first_publish = publish("resume/once", b"once", qos=2, packet_id=9, version=version)
    raw.send(first_publish)
    assert packet_id(expect(raw, PUBREC)[1]) == 9
    assert sub.message().payload == b"once"
    raw.close()  # lost before PUBREL

    raw, present = raw_connect(broker, "resume-once-pub", version, clean=False, expiry=300)
    assert present
    raw.send(with_dup(first_publish))
    assert packet_id(expect(raw, PUBREC)[1]) == 9
    raw.send(ack(PUBREL, 9))
    assert packet_id(expect(raw, PUBCOMP)[1]) == 9
    sub.no_message()
    raw.close()
    sub.disconnect()


@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_mqtt_4_3_3_11_pubrel_for_unknown_packet_id_gets_pubcomp(broker, version):
    """[MQTT-4.3.3-11] PUBREL is answered with PUBCOMP of the same id even when the id is
    unknown; 5.0 says so with reason 0x92 (Packet Identifier not found)."""
    raw, _ = raw_connect(broker, "unknown-pubrel", version)
    raw.send(ack(PUBREL, 777))
    first, body = expect(raw, PUBCOMP)
    assert first == PUBCOMP and packet_id(body) == 777
    if version == 5:
        assert body[2] == 0x92
    else:
        assert len(body) == 2
    # The connection stays usable.
    raw.send(publish("unknown/pubrel", b"x", qos=1, packet_id=778, version=version))
    assert packet_id(expect(raw, PUBACK)[1]) == 778
    raw.close()
