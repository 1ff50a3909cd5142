"""CONNECT / CONNACK / sessions / keep alive / takeover, end to end with paho-mqtt 2.x (and raw
bytes where the exact packet matters or where the test must know the broker has acted).

Spec ids are MQTT 5.0 numbering unless a docstring says 3.1.1.
"""
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes

from mqtt_helpers import TIMEOUT, Client, v5_properties
from raw_client import RawClient, connect, connect_v5, packet, props

V31, V311, V5 = mqtt.MQTTv31, mqtt.MQTTv311, mqtt.MQTTv5
VERSIONS = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]
SLOW = 30  # seconds a raw client waits for the broker to act on a timer (keep alive, timeouts)


def client(broker, client_id="", protocol=V5, clean=True):
    """A paho client that does not reconnect by itself when the broker closes it (an automatic
    reconnect would take the session back from the connection under test)."""
    c = Client(broker, client_id, protocol=protocol, clean=clean)
    c.client._reconnect_on_failure = False
    return c


def connect_props(protocol, expiry):
    if protocol != V5:
        return None
    return v5_properties(PacketTypes.CONNECT, SessionExpiryInterval=expiry)


def persistent(broker, client_id, protocol, clean=False, expiry=300):
    """Connects a client whose session outlives the connection (3.1.1 Clean Session 0, 5.0
    Session Expiry Interval > 0); returns (client, session_present)."""
    c = client(broker, client_id, protocol, clean)
    flags, _, _ = c.connect(properties=connect_props(protocol, expiry))
    return c, flags.session_present


def session_expiry(seconds):
    """The Session Expiry Interval property (0x11)."""
    return bytes([0x11]) + seconds.to_bytes(4, "big")


def raw_disconnect(raw, reason=0x00, properties=b""):
    """Sends a 5.0 DISCONNECT and waits until the broker has closed the connection, so the
    broker has acted on it before the test goes on. Returns what the broker sent meanwhile."""
    raw.send(packet(0xE0, bytes([reason]), props(properties)))
    return raw.read_until_closed()


# --- CONNECT in each protocol version -----------------------------------------------------------

@pytest.mark.parametrize("protocol", [pytest.param(V31, id="v31"), pytest.param(V311, id="v311"),
                                      pytest.param(V5, id="v5")])
def test_mqtt_3_2_0_1_connack_for_each_protocol_version(broker, protocol):
    """[MQTT-3.2.0-1] The server answers CONNECT (MQTT 3.1 "MQIsdp" level 3, 3.1.1, 5.0) with a
    CONNACK accepting it; the connection then carries PUBLISH both ways."""
    c = client(broker, f"versions-{protocol}", protocol)
    flags, rc, _ = c.connect()
    assert rc == 0 and not flags.session_present
    c.subscribe("versions/t", 1)
    c.publish("versions/t", b"hello", qos=1)
    msg = c.message()
    assert (msg.topic, msg.payload, msg.qos) == ("versions/t", b"hello", 1)
    c.disconnect()


# --- Clean Start / Clean Session and Session Present --------------------------------------------

@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_3_2_2_2_clean_start_gives_session_present_0(broker, protocol):
    """[MQTT-3.2.2-2] A connection accepted with Clean Start (3.1.1: Clean Session) 1 gets
    Session Present 0, even though a session for the client id existed (3.1.1: [MQTT-3.2.2-1])."""
    c, present = persistent(broker, "sp-clean", protocol)
    assert not present
    c.subscribe("sp/clean", 1)
    c.disconnect()
    c2, present = persistent(broker, "sp-clean", protocol, clean=True)
    assert not present
    c2.disconnect()


@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_3_2_2_3_resumed_session_gives_session_present_1(broker, protocol):
    """[MQTT-3.2.2-3] Clean Start 0 gets Session Present 1 when the server has a session for the
    client id, 0 when it has none (3.1.1: [MQTT-3.2.2-2] and [MQTT-3.2.2-3])."""
    c, present = persistent(broker, "sp-resume", protocol)
    assert not present  # no session yet
    c.disconnect()
    c2, present = persistent(broker, "sp-resume", protocol)
    assert present
    c2.disconnect()


@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_3_1_2_5_resumed_session_keeps_subscriptions(broker, protocol):
    """[MQTT-3.1.2-5] A session resumed with Clean Start 0 keeps its subscriptions: a message
    published after the reconnect arrives without subscribing again (3.1.1: [MQTT-3.1.2-4])."""
    c, _ = persistent(broker, "keep-subs", protocol)
    c.subscribe("keep/subs/#", 1)
    c.disconnect()
    c2, present = persistent(broker, "keep-subs", protocol)
    assert present
    pub = client(broker, "keep-subs-pub", protocol)
    pub.connect()
    pub.publish("keep/subs/a", b"after-resume", qos=1)
    msg = c2.message()
    assert (msg.topic, msg.payload) == ("keep/subs/a", b"after-resume")
    c2.disconnect()
    pub.disconnect()


@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_3_1_2_4_clean_start_discards_subscriptions(broker, protocol):
    """[MQTT-3.1.2-4] Clean Start 1 discards the existing session: its subscriptions are gone
    (3.1.1: [MQTT-3.1.2-6])."""
    c, _ = persistent(broker, "discard-subs", protocol)
    c.subscribe("discard/subs", 1)
    c.disconnect()
    c2, present = persistent(broker, "discard-subs", protocol, clean=True)
    assert not present
    pub = client(broker, "discard-subs-pub", protocol)
    pub.connect()
    pub.publish("discard/subs", b"nobody", qos=1)
    c2.no_message()
    c2.disconnect()
    pub.disconnect()


# --- Client identifiers -------------------------------------------------------------------------

def test_mqtt_3_2_2_16_empty_client_id_gets_assigned_client_identifier(broker):
    """[MQTT-3.2.2-16] A 5.0 client connecting with an empty client id gets an Assigned Client
    Identifier in CONNACK; the session is then known under that id."""
    c = client(broker, "", V5, clean=False)
    flags, rc, props_ = c.connect(properties=connect_props(V5, 300))
    assigned = getattr(props_, "AssignedClientIdentifier", None)
    assert assigned, f"no Assigned Client Identifier in {props_}"
    assert not flags.session_present
    c.subscribe("assigned/t", 1)
    c.disconnect()
    c2, present = persistent(broker, assigned, V5)
    assert present
    c2.disconnect()


def test_mqtt_3_1_3_8_v311_empty_client_id_with_clean_session_0_refused(broker):
    """3.1.1 [MQTT-3.1.3-8] A zero-byte client id with Clean Session 0 is answered with CONNACK
    return code 0x02 (Identifier rejected) [MQTT-3.2.2-4: Session Present 0] and the connection
    is closed [MQTT-3.2.2-5]."""
    raw = RawClient(broker)
    raw.send(connect("", version=4, flags=0x00))
    assert raw.read_packet() == (0x20, b"\x00\x02")
    assert raw.read_until_closed() == []
    raw.close()


def test_mqtt_3_1_3_6_v311_empty_client_id_with_clean_session_1_accepted(broker):
    """3.1.1 [MQTT-3.1.3-6] A zero-byte client id with Clean Session 1 is accepted (the server
    assigns an id; `allow_empty_client_id` defaults to true)."""
    c = client(broker, "", V311, clean=True)
    flags, rc, _ = c.connect()
    assert rc == 0 and not flags.session_present
    c.subscribe("empty-id/t", 0)
    c.publish("empty-id/t", b"x")
    assert c.message().payload == b"x"
    c.disconnect()


# --- Keep alive ---------------------------------------------------------------------------------

MAX_KEEPALIVE_60 = "[mqtt]\nmax_keepalive = 60\n"


@pytest.mark.parametrize("asked", [120, 0])
def test_mqtt_3_2_2_21_server_keep_alive_caps_v5_keep_alive(broker_factory, asked):
    """[MQTT-3.2.2-21] With max_keepalive = 60, a 5.0 client asking for a keep alive of 120
    (or 0, none) is told Server Keep Alive 60, which the client then uses."""
    broker = broker_factory(MAX_KEEPALIVE_60)
    c = client(broker, f"ska-{asked}", V5)
    _, rc, props_ = c.connect(keepalive=asked)
    assert rc == 0
    assert getattr(props_, "ServerKeepAlive", None) == 60
    assert c.client._keepalive == 60  # paho adopted it
    c.disconnect()


def test_mqtt_3_2_2_22_no_server_keep_alive_within_the_maximum(broker_factory):
    """[MQTT-3.2.2-22] A keep alive within max_keepalive is kept: CONNACK carries no Server
    Keep Alive."""
    broker = broker_factory(MAX_KEEPALIVE_60)
    c = client(broker, "ska-30", V5)
    _, rc, props_ = c.connect(keepalive=30)
    assert rc == 0 and not hasattr(props_, "ServerKeepAlive")
    c.disconnect()


def test_mqtt_3_2_2_5_v311_keep_alive_above_maximum_refused_with_code_2(broker_factory):
    """3.1.1 cannot be told a Server Keep Alive: with max_keepalive = 60 a 3.1.1 client asking
    for 120 is refused with CONNACK return code 0x02 and closed ([MQTT-3.2.2-4], [MQTT-3.2.2-5]);
    paho reports it as a failure. 30 is accepted."""
    broker = broker_factory(MAX_KEEPALIVE_60)
    raw = RawClient(broker)
    raw.send(connect("ka-raw", version=4, flags=0x02, keepalive=120))
    assert raw.read_packet() == (0x20, b"\x00\x02")
    assert raw.read_until_closed() == []
    raw.close()

    c = client(broker, "ka-paho", V311)
    flags, rc, _ = c.connect(keepalive=120, expect_success=False)
    assert rc.is_failure and not flags.session_present
    c.client.loop_stop()

    ok = client(broker, "ka-ok", V311)
    _, rc, _ = ok.connect(keepalive=30)
    assert rc == 0
    ok.disconnect()


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_mqtt_3_1_2_22_keep_alive_enforced_at_one_and_a_half_times(broker, version):
    """[MQTT-3.1.2-22] (3.1.1: [MQTT-3.1.2-24]) A client that connects with keep alive 1 and then
    sends nothing is disconnected by the server; a 5.0 client first gets DISCONNECT 0x8D (Keep
    Alive timeout)."""
    raw = RawClient(broker)
    raw.sock.settimeout(SLOW)
    raw.send(connect(f"ka-silent-{version}", version=version, keepalive=1))
    first, body = raw.read_packet()
    assert first == 0x20 and body[1] == 0x00
    packets = raw.read_until_closed()
    if version == 5:
        assert [(p[0], p[1][0]) for p in packets] == [(0xE0, 0x8D)], packets
    else:
        assert packets == []
    raw.close()


def test_mqtt_3_1_0_1_connection_without_connect_closed_after_connect_timeout(broker_factory):
    """[MQTT-3.1.0-1] The first packet must be CONNECT; a connection that sends nothing is closed
    once `connect_timeout` (here 1 s) has passed, without any packet from the server."""
    broker = broker_factory("[mqtt]\nconnect_timeout = 1\n")
    raw = RawClient(broker)
    raw.sock.settimeout(SLOW)
    assert raw.read_until_closed() == []
    raw.close()


# --- Takeover -----------------------------------------------------------------------------------

def test_mqtt_3_1_4_3_takeover_v5_disconnects_first_connection_with_0x8e(broker):
    """[MQTT-3.1.4-3] A second connection with the same client id: the first (5.0) gets
    DISCONNECT 0x8E (Session taken over) and is closed; the second works."""
    old = connect_v5(broker, "takeover")
    new = client(broker, "takeover", V5)
    _, rc, _ = new.connect()
    assert rc == 0
    packets = old.read_until_closed()
    assert [(p[0], p[1][0]) for p in packets] == [(0xE0, 0x8E)], packets
    old.close()
    new.subscribe("takeover/t", 1)
    new.publish("takeover/t", b"still here", qos=1)
    assert new.message().payload == b"still here"
    new.disconnect()


def test_mqtt_3_1_4_3_takeover_v5_paho_sees_session_taken_over(broker):
    """[MQTT-3.1.4-3] paho, taken over by a second paho connection with its client id, reports
    the server's DISCONNECT reason 0x8E."""
    old = client(broker, "takeover-paho", V5)
    old.connect()
    new = client(broker, "takeover-paho", V5)
    new.connect()
    rc, _ = old.disconnects.get(timeout=TIMEOUT)
    assert rc == 0x8E, rc
    old.client.loop_stop()
    new.disconnect()


def test_mqtt_3_1_4_3_takeover_v311_closes_first_connection(broker):
    """[MQTT-3.1.4-3] (3.1.1: [MQTT-3.1.4-2]) A 3.1.1 connection taken over is closed without a
    packet (3.1.1 has no server DISCONNECT)."""
    old = RawClient(broker)
    old.send(connect("takeover-311", version=4))
    assert old.read_packet() == (0x20, b"\x00\x00")
    new = client(broker, "takeover-311", V311)
    _, rc, _ = new.connect()
    assert rc == 0
    assert old.read_until_closed() == []
    old.close()
    new.disconnect()


# --- Session Expiry Interval (5.0) --------------------------------------------------------------

def test_mqtt_3_1_2_23_session_with_expiry_resumes_with_queued_messages(broker):
    """[MQTT-3.1.2-23] A 5.0 session with a Session Expiry Interval outlives its connection: on
    reconnect (Clean Start 0) Session Present is 1 and the QoS 1 messages published meanwhile
    are delivered, in order [MQTT-4.6.0-5]."""
    sub, _ = persistent(broker, "expiry-resume", V5, expiry=300)
    sub.subscribe("expiry/resume", 1)
    sub.disconnect()
    pub = client(broker, "expiry-resume-pub", V5)
    pub.connect()
    for i in range(3):
        pub.publish("expiry/resume", f"m{i}".encode(), qos=1)
    sub2, present = persistent(broker, "expiry-resume", V5, expiry=300)
    assert present
    got = [sub2.message() for _ in range(3)]
    assert [(m.payload, m.qos) for m in got] == [(b"m0", 1), (b"m1", 1), (b"m2", 1)]
    sub2.no_message()
    sub2.disconnect()
    pub.disconnect()


def test_mqtt_3_1_2_23_session_with_expiry_0_ends_with_connection(broker):
    """[MQTT-3.1.2-23] A 5.0 session with Session Expiry Interval 0 (absent) ends with its
    connection: Clean Start 0 afterwards gets Session Present 0 and nothing of the old session."""
    sub, _ = persistent(broker, "expiry-zero", V5, expiry=0)
    sub.subscribe("expiry/zero", 1)
    sub.disconnect()
    pub = client(broker, "expiry-zero-pub", V5)
    pub.connect()
    pub.publish("expiry/zero", b"lost", qos=1)
    sub2, present = persistent(broker, "expiry-zero", V5, expiry=0)
    assert not present
    pub.publish("expiry/zero", b"after", qos=1)  # the old subscription is gone as well
    sub2.no_message()
    sub2.disconnect()
    pub.disconnect()


def test_mqtt_3_1_2_23_session_expiry_set_to_0_at_disconnect_ends_session(broker):
    """[MQTT-3.1.2-23] (Session Expiry Interval in DISCONNECT, 5.0 section 3.14.2.2.2) A session
    connected with expiry 300 that disconnects with expiry 0 ends: Session Present 0 next time."""
    raw = connect_v5(broker, "expiry-to-zero", properties=props(session_expiry(300)), flags=0x00)
    assert raw_disconnect(raw, 0x00, session_expiry(0)) == []
    raw.close()
    c, present = persistent(broker, "expiry-to-zero", V5)
    assert not present
    c.disconnect()


def test_mqtt_3_1_2_23_session_expiry_extended_at_disconnect_keeps_session(broker):
    """[MQTT-3.1.2-23] (5.0 section 3.14.2.2.2) A session connected with expiry 1 that
    disconnects with expiry 3600 outlives the original 1 s. Proven without a clock: a control
    session with expiry 1, detached later, publishes its will when it ends (its Will Delay is
    longer, [MQTT-3.1.3-9]); once that will has arrived, the original expiry would be over too."""
    raw = connect_v5(broker, "expiry-extended", properties=props(session_expiry(1)), flags=0x00)
    assert raw_disconnect(raw, 0x00, session_expiry(3600)) == []
    raw.close()

    watcher = client(broker, "expiry-watcher", V5)
    watcher.connect()
    watcher.subscribe("expiry/control/will", 1)
    control = client(broker, "expiry-control", V5, clean=False)
    control.client.will_set("expiry/control/will", b"control ended", qos=1,
                            properties=v5_properties(PacketTypes.WILLMESSAGE, WillDelayInterval=3600))
    control.connect(properties=connect_props(V5, 1))
    control.kill()
    assert watcher.message(timeout=SLOW).payload == b"control ended"

    c, present = persistent(broker, "expiry-extended", V5)
    assert present
    c.disconnect()
    watcher.disconnect()


def test_mqtt_3_14_2_2_2_nonzero_expiry_at_disconnect_after_zero_is_protocol_error(broker):
    """5.0 section 3.14.2.2.2: if CONNECT had Session Expiry Interval 0, a non-zero one in the
    client's DISCONNECT is a Protocol Error: the server answers DISCONNECT 0x82 and closes
    [MQTT-4.13.1-1]."""
    raw = connect_v5(broker, "expiry-protocol-error", flags=0x02)
    packets = raw_disconnect(raw, 0x00, session_expiry(60))
    assert [(p[0], p[1][0]) for p in packets] == [(0xE0, 0x82)], packets
    raw.close()
