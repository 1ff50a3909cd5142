"""Authorization rules ([[authorization.rules]]): denied subscriptions get 0x80, denied publications
are refused (5.0: 0x87) or acknowledged and dropped (3.1.1), and subscribe rules also filter what
wildcard subscriptions deliver."""
import pathlib

import paho.mqtt.client as mqtt
import pytest

import raw_client as raw
from mqtt_helpers import Client

# Exactly the fragment the conformance suites and operators use (the TOML parser's tests read it too).
NOSUBSCRIBE_CONFIG = (pathlib.Path(__file__).parent / "nosubscribe.toml").read_text()

VERSIONS = [pytest.param(mqtt.MQTTv311, id="v311"), pytest.param(mqtt.MQTTv5, id="v5")]

GRANTED_QOS1 = 0x01
FAILURE = 0x80
NOT_AUTHORIZED = 0x87


def codes(rcs):
    return [rc.value for rc in rcs]


def rules(*entries, extra=""):
    """A configuration with the given rules, each a dict of the rule's fields."""
    text = extra
    for entry in entries:
        text += "\n[[authorization.rules]]\n" + "".join(f'{k} = "{v}"\n' for k, v in entry.items())
    return text


def assert_echo(client, topic, payload):
    """The client's own QoS 1 message on `topic` comes back to it, and nothing else."""
    client.publish(topic, payload, qos=1)
    assert client.message().payload == payload
    client.no_message()


@pytest.fixture
def nosubscribe_broker(broker_factory):
    return broker_factory(config_text=NOSUBSCRIBE_CONFIG)


# ---- subscribe rules ---------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_3_9_3_1_denied_subscription_gets_0x80(nosubscribe_broker, protocol):
    """[MQTT-3.9.3-1] A SUBSCRIBE to the denied filter gets 0x80 for it, in its place, while the
    other filters of the same packet are granted; 0x80 is the failure code of 3.1.1 and
    "Unspecified error" of 5.0."""
    c = Client.connected(nosubscribe_broker, protocol=protocol)
    assert codes(c.subscribe([("test/ok", 1), ("test/nosubscribe", 1), ("test/other", 0)])) == [GRANTED_QOS1, FAILURE, 0]
    assert codes(c.subscribe("test/nosubscribe", 0)) == [FAILURE]
    # The granted subscriptions work.
    c.publish("test/ok", b"fine", qos=1)
    assert c.message().topic == "test/ok"
    c.disconnect()


@pytest.mark.parametrize("protocol", VERSIONS)
def test_denied_topic_not_delivered_through_wildcard(nosubscribe_broker, protocol):
    """A subscription to `#` (granted) does not carry messages on the denied topic: subscribe rules
    apply to each message delivered, not only to the filter subscribed."""
    sub = Client.connected(nosubscribe_broker, protocol=protocol)
    assert codes(sub.subscribe("#", 1)) == [GRANTED_QOS1]
    assert codes(sub.subscribe("test/+", 1)) == [GRANTED_QOS1]
    pub = Client.connected(nosubscribe_broker, protocol=mqtt.MQTTv5)
    pub.publish("test/nosubscribe", b"secret", qos=1)
    pub.publish("test/allowed", b"public", qos=1)
    msg = sub.message()
    assert (msg.topic, msg.payload) == ("test/allowed", b"public")
    sub.no_message()
    pub.disconnect()
    sub.disconnect()


def test_denied_topic_retained_not_sent(nosubscribe_broker):
    """A retained message on the denied topic is not sent to a new `test/#` subscription."""
    pub = Client.connected(nosubscribe_broker, protocol=mqtt.MQTTv5)
    pub.publish("test/nosubscribe", b"secret", qos=1, retain=True)
    pub.publish("test/visible", b"seen", qos=1, retain=True)
    sub = Client.connected(nosubscribe_broker, protocol=mqtt.MQTTv5)
    sub.subscribe("test/#", 1)
    msg = sub.message()
    assert (msg.topic, msg.payload, msg.retain) == ("test/visible", b"seen", True)
    sub.no_message()


def test_mqtt_3_2_2_21_max_keepalive_of_the_fragment(nosubscribe_broker):
    """The fragment's max_keepalive = 60 holds: a 5.0 client asking for 0 is told 60 as Server
    Keep Alive [MQTT-3.2.2-21]."""
    c = Client(nosubscribe_broker, protocol=mqtt.MQTTv5)
    _, _, props = c.connect(keepalive=0)
    assert props.ServerKeepAlive == 60
    c.disconnect()


# ---- publish rules -----------------------------------------------------------------------------

@pytest.fixture
def nopublish_broker(broker_factory):
    return broker_factory(config_text=rules({"permission": "deny", "action": "publish", "filter": "locked/#"}))


def test_denied_publish_v5_puback_0x87(nopublish_broker):
    """A denied QoS 1 PUBLISH from a 5.0 client gets PUBACK 0x87 (Not authorized) and reaches no one."""
    sub = Client.connected(nopublish_broker, protocol=mqtt.MQTTv5)
    sub.subscribe("locked/#", 1)
    pub = Client.connected(nopublish_broker, protocol=mqtt.MQTTv5)
    assert pub.publish_answer("locked/door", b"open") == NOT_AUTHORIZED
    sub.no_message()


def test_denied_publish_v5_pubrec_0x87(nopublish_broker):
    """A denied QoS 2 PUBLISH from a 5.0 client gets PUBREC 0x87, which ends the exchange
    [MQTT-4.3.3-4] (read raw: paho would answer a failed PUBREC with PUBREL anyway)."""
    sub = Client.connected(nopublish_broker, protocol=mqtt.MQTTv5)
    sub.subscribe("locked/#", 2)
    pub = raw.connect_v5(nopublish_broker, "raw-publisher")
    pub.send(raw.publish("locked/door", b"open", qos=2, packet_id=7))
    first, body = pub.read_packet()
    assert (first, body[:3]) == (0x50, b"\x00\x07\x87")
    sub.no_message()
    pub.close()


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mqtt_3_3_5_2_denied_publish_v311_acknowledged_and_dropped(nopublish_broker, qos):
    """[MQTT-3.3.5-2] 3.1.1 cannot say no: the server acknowledges the denied PUBLISH normally and
    drops it; the connection stays up."""
    sub = Client.connected(nopublish_broker, protocol=mqtt.MQTTv311)
    sub.subscribe("locked/#", 2)
    pub = Client.connected(nopublish_broker, protocol=mqtt.MQTTv311)
    pub.publish("locked/door", b"open", qos=qos)  # waits for PUBACK / PUBCOMP at QoS 1 / 2
    sub.no_message()
    # Still connected and served: its allowed publication is delivered.
    sub.subscribe("free/x", 1)
    pub.publish("free/x", b"ok", qos=1)
    assert sub.message().payload == b"ok"


def test_allowed_publish_next_to_a_denied_one(nopublish_broker):
    """Rules apply to their filter only: the same client publishes elsewhere normally."""
    sub = Client.connected(nopublish_broker, protocol=mqtt.MQTTv5)
    sub.subscribe("open/#", 1)
    pub = Client.connected(nopublish_broker, protocol=mqtt.MQTTv5)
    assert pub.publish_answer("open/door", b"yes") == 0
    assert sub.message().payload == b"yes"


# ---- rules for one user or one client ----------------------------------------------------------

def test_rule_by_username(broker_factory):
    """A rule naming a username applies to that user only."""
    broker = broker_factory(config_text=rules(
        {"permission": "deny", "action": "all", "filter": "plant/#", "username": "guest"}))
    guest = Client.connected(broker, protocol=mqtt.MQTTv5, username="guest", password="pw")
    operator = Client.connected(broker, protocol=mqtt.MQTTv5, username="operator", password="pw")
    assert codes(guest.subscribe("plant/#", 1)) == [FAILURE]
    assert codes(operator.subscribe("plant/#", 1)) == [GRANTED_QOS1]
    assert guest.publish_answer("plant/valve", b"close") == NOT_AUTHORIZED
    assert_echo(operator, "plant/valve", b"open")


def test_rule_by_client_id(broker_factory):
    """A rule naming a client id applies to that client only."""
    broker = broker_factory(config_text=rules(
        {"permission": "deny", "action": "subscribe", "filter": "alarms/#", "client_id": "untrusted"}))
    untrusted = Client.connected(broker, client_id="untrusted", protocol=mqtt.MQTTv311)
    trusted = Client.connected(broker, client_id="trusted", protocol=mqtt.MQTTv311)
    assert codes(untrusted.subscribe("alarms/fire", 1)) == [FAILURE]
    assert codes(trusted.subscribe("alarms/fire", 1)) == [GRANTED_QOS1]
    # The untrusted client's publication is still allowed (the rule is about subscribing).
    untrusted.publish("alarms/fire", b"drill", qos=1)
    assert trusted.message().payload == b"drill"


def test_rules_first_match_decides(broker_factory):
    """Rules are checked in order and the first that applies decides: an allow before a broader
    deny carves an exception out of it."""
    broker = broker_factory(config_text=rules(
        {"permission": "allow", "action": "subscribe", "filter": "data/public/#"},
        {"permission": "deny", "action": "subscribe", "filter": "data/#"}))
    c = Client.connected(broker, protocol=mqtt.MQTTv5)
    assert codes(c.subscribe([("data/public/a", 1), ("data/private/a", 1)])) == [GRANTED_QOS1, FAILURE]


def test_username_substitution(broker_factory):
    """%u in a filter stands for the connecting user name: each user reaches only their own tree."""
    broker = broker_factory(config_text=rules(
        {"permission": "allow", "action": "all", "filter": "users/%u/#"},
        {"permission": "deny", "action": "all", "filter": "users/#"}))
    alice = Client.connected(broker, protocol=mqtt.MQTTv5, username="alice")
    bob = Client.connected(broker, protocol=mqtt.MQTTv5, username="bob")
    assert codes(alice.subscribe([("users/alice/inbox", 1), ("users/bob/inbox", 1)])) == [GRANTED_QOS1, FAILURE]
    assert bob.publish_answer("users/alice/inbox", b"hi alice") == NOT_AUTHORIZED
    assert_echo(alice, "users/alice/inbox", b"note to self")


def test_client_id_substitution(broker_factory):
    """%c in a filter stands for the client id."""
    broker = broker_factory(config_text=rules(
        {"permission": "allow", "action": "all", "filter": "devices/%c/#"},
        {"permission": "deny", "action": "all", "filter": "devices/#"}))
    d1 = Client.connected(broker, client_id="dev1", protocol=mqtt.MQTTv311)
    assert codes(d1.subscribe([("devices/dev1/cmd", 1), ("devices/dev2/cmd", 1)])) == [GRANTED_QOS1, FAILURE]
    d2 = Client.connected(broker, client_id="dev2", protocol=mqtt.MQTTv311)
    d2.publish("devices/dev1/cmd", b"from dev2", qos=1)  # 3.1.1: acknowledged and dropped
    assert_echo(d1, "devices/dev1/cmd", b"from dev1")


def test_substituted_wildcards_do_not_widen(broker_factory):
    """A client id holding '#' does not turn `devices/%c/#` into `devices/#/#`: the substitution is
    literal, so the client gets nothing beyond a level literally named after it."""
    broker = broker_factory(config_text=rules(
        {"permission": "allow", "action": "subscribe", "filter": "devices/%c/#"},
        {"permission": "deny", "action": "subscribe", "filter": "devices/#"}))
    sneaky = Client.connected(broker, client_id="#", protocol=mqtt.MQTTv5)
    assert codes(sneaky.subscribe("devices/other/cmd", 1)) == [FAILURE]
