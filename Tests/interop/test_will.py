"""Will Messages end to end with paho-mqtt 2.x, and raw bytes where the test must know the
broker has acted on a DISCONNECT before proving that no will was published.

Absence is proven with a round trip through the broker (`Client.no_message`) made after the
event that would have published the will. Spec ids are MQTT 5.0 numbering unless a docstring
says 3.1.1.
"""
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from mqtt_helpers import TIMEOUT, Client, v5_properties
from raw_client import RawClient, connect, packet, props, string

V311, V5 = mqtt.MQTTv311, mqtt.MQTTv5
VERSIONS = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]
RAW_VERSIONS = [pytest.param(4, id="v311"), pytest.param(5, id="v5")]
SLOW = 30  # seconds to wait for a timer-driven will (keep alive, Will Delay, session expiry)


def client(broker, client_id="", protocol=V5, clean=True):
    """A paho client that does not reconnect by itself when the broker closes it."""
    c = Client(broker, client_id, protocol=protocol, clean=clean)
    c.client._reconnect_on_failure = False
    return c


def watcher(broker, topic, protocol=V5):
    """A connected client subscribed to `topic` at QoS 2."""
    c = client(broker, f"watcher-{topic}", protocol)
    c.connect()
    c.subscribe(topic, 2)
    return c


def will_client(broker, client_id, topic, payload=b"will", qos=0, retain=False, protocol=V5,
                delay=None, expiry=None, clean=True, **will_props):
    """A connected paho client with a will; 5.0 options: Will Delay Interval, Session Expiry
    Interval, other will properties."""
    c = client(broker, client_id, protocol, clean)
    properties = None
    if protocol == V5:
        if delay is not None:
            will_props["WillDelayInterval"] = delay
        properties = v5_properties(PacketTypes.WILLMESSAGE, **will_props) if will_props else None
    c.client.will_set(topic, payload, qos=qos, retain=retain, properties=properties)
    connect_properties = None
    if protocol == V5 and expiry is not None:
        connect_properties = v5_properties(PacketTypes.CONNECT, SessionExpiryInterval=expiry)
    c.connect(properties=connect_properties)
    return c


def session_expiry(seconds):
    return bytes([0x11]) + seconds.to_bytes(4, "big")


def raw_will_connect(broker, client_id, version, topic, payload=b"will", qos=0, keepalive=60, clean=True,
                     expiry=None):
    """A raw client connected with a will (no will properties); returns (client, session_present)."""
    raw = RawClient(broker)
    flags = (0x02 if clean else 0x00) | 0x04 | (qos << 3)
    body = string(client_id) + (b"\x00" if version == 5 else b"") + string(topic) + string(payload)
    p = props(session_expiry(expiry)) if expiry else b"\x00"
    raw.send(connect(client_id, version=version, flags=flags, keepalive=keepalive, properties=p, payload=body))
    first, body = raw.read_packet()
    assert first == 0x20 and body[1] == 0x00, f"CONNACK {first:#04x} {bytes(body)!r}"
    return raw, bool(body[0] & 1)


def raw_resume(broker, client_id, expiry=300):
    """A raw 5.0 client (no will) resuming `client_id` with Clean Start 0; returns (client,
    session_present)."""
    raw = RawClient(broker)
    raw.send(connect(client_id, version=5, flags=0x00, properties=props(session_expiry(expiry))))
    first, body = raw.read_packet()
    assert first == 0x20 and body[1] == 0x00, f"CONNACK {first:#04x} {bytes(body)!r}"
    return raw, bool(body[0] & 1)


def raw_disconnect(raw, version=5, reason=0x00, properties=b""):
    """Sends DISCONNECT and waits until the broker has closed the connection: by then it has
    decided about the will. Returns what the broker sent meanwhile."""
    raw.send(packet(0xE0, bytes([reason]), props(properties)) if version == 5 else packet(0xE0))
    packets = raw.read_until_closed()
    raw.close()
    return packets


# --- Abnormal close ---------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_3_1_2_8_will_published_when_connection_drops(broker, protocol):
    """[MQTT-3.1.2-8] The will is published when the network connection closes without
    DISCONNECT, with its topic, payload and Will QoS; a will with Will Retain 0 is published as
    a non-retained message [MQTT-3.1.2-14] (3.1.1: [MQTT-3.1.2-16])."""
    w = watcher(broker, "will/drop", protocol)
    c = will_client(broker, "will-drop", "will/drop", b"gone", qos=1, protocol=protocol)
    c.kill()
    msg = w.message()
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == ("will/drop", b"gone", 1, False)
    late = watcher(broker, "will/drop", protocol)
    late.no_message()
    late.disconnect()
    w.disconnect()


@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_3_1_2_15_retained_will_published_as_retained_message(broker, protocol):
    """[MQTT-3.1.2-15] (3.1.1: [MQTT-3.1.2-17]) A will with Will Retain 1 is published as a
    retained message: current subscribers get it with RETAIN 0 (established subscription,
    [MQTT-3.3.1-12]), later subscribers get it as the retained message; both at the Will QoS."""
    w = watcher(broker, "will/retained", protocol)
    c = will_client(broker, "will-retained", "will/retained", b"last words", qos=2, retain=True, protocol=protocol)
    c.kill()
    msg = w.message()
    assert (msg.payload, msg.qos, msg.retain) == (b"last words", 2, False)
    late = watcher(broker, "will/retained", protocol)
    msg = late.message()
    assert (msg.payload, msg.qos, msg.retain) == (b"last words", 2, True)
    late.disconnect()
    w.disconnect()


def test_mqtt_3_1_3_10_will_properties_forwarded(broker):
    """5.0 Will properties reach subscribers: User Properties in order [MQTT-3.1.3-10], Content
    Type [MQTT-3.3.2-20], Payload Format Indicator [MQTT-3.3.2-4], Response Topic
    [MQTT-3.3.2-15] and Correlation Data [MQTT-3.3.2-16] unaltered; Message Expiry Interval
    forwarded (less the time waited, [MQTT-3.3.2-6]); the Will Delay Interval is not forwarded."""
    w = watcher(broker, "will/props")
    user = [("origin", "sensor-7"), ("k", "v1"), ("k", "v2")]
    c = will_client(broker, "will-props", "will/props", "offline".encode(), qos=1, delay=0,
                    ContentType="text/plain", UserProperty=user, PayloadFormatIndicator=1,
                    ResponseTopic="will/response", CorrelationData=b"\x01\x02", MessageExpiryInterval=300)
    c.kill()
    msg = w.message()
    p = msg.properties
    assert msg.payload == b"offline"
    assert p.ContentType == "text/plain"
    assert p.UserProperty == user
    assert p.PayloadFormatIndicator == 1
    assert p.ResponseTopic == "will/response"
    assert p.CorrelationData == b"\x01\x02"
    assert 1 <= p.MessageExpiryInterval <= 300
    assert not hasattr(p, "WillDelayInterval")
    w.disconnect()


@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_mqtt_3_1_2_8_will_published_on_keep_alive_timeout(broker, version):
    """[MQTT-3.1.2-8] [MQTT-3.1.2-22] A client that stops talking within 1.5 × keep alive is
    disconnected as if the network had failed: its will is published."""
    w = watcher(broker, "will/keepalive")
    raw, _ = raw_will_connect(broker, f"will-ka-{version}", version, "will/keepalive", b"silent", keepalive=1)
    raw.sock.settimeout(SLOW)
    assert w.message(timeout=SLOW).payload == b"silent"
    raw.read_until_closed()
    raw.close()
    w.disconnect()


@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_mqtt_3_1_2_8_will_published_when_server_closes_on_protocol_error(broker, version):
    """[MQTT-3.1.2-8] The server closing the connection for a protocol error (a second CONNECT,
    [MQTT-3.1.0-2]) publishes the will."""
    w = watcher(broker, "will/error")
    raw, _ = raw_will_connect(broker, f"will-err-{version}", version, "will/error", b"error")
    raw.send(connect(f"will-err-{version}", version=version))
    raw.read_until_closed()
    raw.close()
    assert w.message().payload == b"error"
    w.disconnect()


# --- DISCONNECT ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_mqtt_3_14_4_3_no_will_after_normal_disconnect(broker, version):
    """[MQTT-3.14.4-3] [MQTT-3.1.2-10] DISCONNECT (5.0: reason 0x00) discards the will: once the
    broker has closed the connection, no will was published."""
    w = watcher(broker, "will/normal")
    raw, _ = raw_will_connect(broker, f"will-normal-{version}", version, "will/normal", b"must not")
    assert raw_disconnect(raw, version) == []
    w.no_message()
    w.disconnect()


def test_mqtt_3_14_4_3_will_published_after_disconnect_with_will_message_0x04(broker):
    """5.0 [MQTT-3.14.4-3] only DISCONNECT 0x00 discards the will: paho disconnecting with
    0x04 (Disconnect with Will Message) gets its will published."""
    w = watcher(broker, "will/0x04")
    c = will_client(broker, "will-0x04", "will/0x04", b"on purpose", qos=1)
    c.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=0x04))
    msg = w.message()
    assert (msg.payload, msg.qos) == (b"on purpose", 1)
    w.disconnect()


# --- Will Delay Interval (5.0) ------------------------------------------------------------------------

def test_mqtt_3_1_3_9_reconnect_before_will_delay_sends_no_will(broker):
    """[MQTT-3.1.3-9] A new connection to the session before the Will Delay Interval (30 s) has
    passed: the will is never sent. Proven by ending the resumed session (DISCONNECT with
    Session Expiry 0): a will still pending would be published then."""
    w = watcher(broker, "will/delay/reconnect")
    c = will_client(broker, "will-delay-reconnect", "will/delay/reconnect", b"must not", qos=1,
                    delay=30, expiry=300, clean=False)
    c.kill()
    w.no_message()  # not at the close: it is delayed
    raw, present = raw_resume(broker, "will-delay-reconnect")
    assert present
    assert raw_disconnect(raw, 5, 0x00, session_expiry(0)) == []
    w.no_message()
    w.disconnect()


def test_mqtt_3_1_3_9_will_published_when_will_delay_passes(broker):
    """[MQTT-3.1.3-9] A Will Delay Interval (2 s) shorter than the Session Expiry Interval
    (300 s): the will is published once the delay has passed, while the session still exists
    (a reconnect afterwards finds it)."""
    w = watcher(broker, "will/delay/elapsed")
    c = will_client(broker, "will-delay-elapsed", "will/delay/elapsed", b"late", qos=1,
                    delay=2, expiry=300, clean=False)
    c.kill()
    msg = w.message(timeout=SLOW)
    assert (msg.payload, msg.qos) == (b"late", 1)
    raw, present = raw_resume(broker, "will-delay-elapsed")
    assert present
    raw.close()
    w.disconnect()


@pytest.mark.parametrize("expiry", [0, 1])
def test_mqtt_3_1_3_9_session_end_before_will_delay_publishes_will(broker, expiry):
    """[MQTT-3.1.3-9] The will is published when the Will Delay Interval passes or the session
    ends, whichever is first: with Will Delay 3600 s and Session Expiry 0 (ends at the close)
    or 1 s, the will is published at the session's end; a reconnect finds no session."""
    w = watcher(broker, "will/delay/session-end")
    c = will_client(broker, f"will-session-end-{expiry}", "will/delay/session-end", b"session over",
                    qos=1, delay=3600, expiry=expiry, clean=False)
    c.kill()
    assert w.message(timeout=SLOW).payload == b"session over"
    raw, present = raw_resume(broker, f"will-session-end-{expiry}")
    assert not present
    raw.close()
    w.disconnect()


# --- Takeover -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_3_1_4_3_takeover_publishes_will_of_replaced_connection(broker, protocol):
    """[MQTT-3.1.4-3] Takeover closes the existing connection without a DISCONNECT 0x00 from its
    client, so its will is published [MQTT-3.1.2-8] (5.0: "as described in 3.1.2.5"; here no
    Will Delay)."""
    w = watcher(broker, "will/takeover/#", protocol)
    old = will_client(broker, "will-takeover", "will/takeover/old", b"old", qos=1, protocol=protocol)
    new = will_client(broker, "will-takeover", "will/takeover/new", b"new", qos=1, protocol=protocol)
    msg = w.message()
    assert (msg.topic, msg.payload) == ("will/takeover/old", b"old")
    old.disconnects.get(timeout=TIMEOUT)
    old.client.loop_stop()
    new.disconnect()
    w.disconnect()


def test_mqtt_3_1_3_9_takeover_resuming_session_before_will_delay_sends_no_will(broker):
    """[MQTT-3.1.3-9] Takeover by a connection that resumes the session (Clean Start 0) before
    the old connection's Will Delay Interval (30 s) passed: that will is never sent (proven by
    ending the session afterwards)."""
    w = watcher(broker, "will/takeover/resume")
    old = will_client(broker, "will-takeover-resume", "will/takeover/resume", b"must not", qos=1,
                      delay=30, expiry=300, clean=False)
    raw, present = raw_resume(broker, "will-takeover-resume")
    assert present
    rc, _ = old.disconnects.get(timeout=TIMEOUT)
    assert rc == 0x8E
    old.client.loop_stop()
    w.no_message()
    assert raw_disconnect(raw, 5, 0x00, session_expiry(0)) == []
    w.no_message()
    w.disconnect()


def test_mqtt_3_1_3_9_takeover_with_clean_start_publishes_delayed_will(broker):
    """[MQTT-3.1.3-9] [MQTT-3.1.2-4] Takeover with Clean Start 1 ends the old session, which
    publishes its will at once although its Will Delay Interval (3600 s) has not passed."""
    w = watcher(broker, "will/takeover/clean")
    old = will_client(broker, "will-takeover-clean", "will/takeover/clean", b"session ended", qos=1,
                      delay=3600, expiry=300, clean=False)
    new = client(broker, "will-takeover-clean", V5, clean=True)
    _, _, _ = new.connect()
    assert w.message(timeout=SLOW).payload == b"session ended"
    old.disconnects.get(timeout=TIMEOUT)
    old.client.loop_stop()
    new.disconnect()
    w.disconnect()
