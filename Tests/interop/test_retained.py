"""Retained messages end to end with paho-mqtt 2.x: store, replace, delete, the RETAIN flag on
delivery, Retain Handling and Retain As Published (5.0), and `$` topics.

The 3.1.1 and 5.0 specifications number the retained-message rules differently; each docstring
says which numbering its ids are in.
"""
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from mqtt_helpers import Client

V311, V5 = mqtt.MQTTv311, mqtt.MQTTv5
VERSIONS = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]
SLOW = 30  # seconds to wait for a timer-driven publication ($SYS)


def client(broker, client_id="", protocol=V5):
    c = Client(broker, client_id, protocol=protocol)
    c.client._reconnect_on_failure = False
    c.connect()
    return c


def subscriber(broker, client_id, protocol, filter_):
    """A client subscribed to `filter_` at QoS 1."""
    c = client(broker, client_id, protocol)
    c.subscribe(filter_, 1)
    return c


def options(qos=1, retain_as_published=False, retain_handling=0):
    return SubscribeOptions(qos=qos, retainAsPublished=retain_as_published, retainHandling=retain_handling)


# --- Store, replace, delete -------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_3_3_1_5_retained_message_stored_and_replaced(broker, protocol):
    """[MQTT-3.3.1-5] (both versions) A PUBLISH with RETAIN 1 is stored as the topic's retained
    message, replacing the previous one: a new subscriber gets only the latest."""
    pub = client(broker, "store-pub", protocol)
    pub.publish("ret/store", b"first", qos=1, retain=True)
    pub.publish("ret/store", b"second", qos=1, retain=True)
    sub = subscriber(broker, "store-sub", protocol, "ret/store")
    msg = sub.message()
    assert (msg.topic, msg.payload, msg.retain) == ("ret/store", b"second", True)
    sub.no_message()
    sub.disconnect()
    pub.disconnect()


@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_3_3_1_9_retained_messages_sent_on_subscribe_with_retain_1(broker, protocol):
    """5.0 [MQTT-3.3.1-9] (3.1.1: [MQTT-3.3.1-8]) A new subscription gets the retained message of
    every matching topic, with RETAIN 1, at min(message QoS, granted QoS) [MQTT-3.8.4-8]."""
    pub = client(broker, "onsub-pub", protocol)
    pub.publish("ret/onsub/a", b"a", qos=1, retain=True)
    pub.publish("ret/onsub/b/c", b"bc", qos=2, retain=True)
    pub.publish("ret/other", b"other", qos=1, retain=True)
    sub = subscriber(broker, "onsub-sub", protocol, "ret/onsub/#")
    got = sorted((m.topic, m.payload, m.qos, m.retain) for m in (sub.message(), sub.message()))
    assert got == [("ret/onsub/a", b"a", 1, True), ("ret/onsub/b/c", b"bc", 1, True)]
    sub.no_message()
    sub0 = client(broker, "onsub-sub0", protocol)
    sub0.subscribe("ret/onsub/b/c", 0)
    msg = sub0.message()
    assert (msg.payload, msg.qos, msg.retain) == (b"bc", 0, True)
    sub0.disconnect()
    sub.disconnect()
    pub.disconnect()


@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_3_3_1_10_empty_retained_payload_deletes(broker, protocol):
    """3.1.1 [MQTT-3.3.1-10] (5.0: [MQTT-3.3.1-6]) A retained PUBLISH with an empty payload is
    forwarded as normal to current subscribers (RETAIN 0) and removes the topic's retained
    message: later subscribers get none."""
    existing = client(broker, "delete-existing", protocol)
    existing.subscribe("ret/delete", 1)
    pub = client(broker, "delete-pub", protocol)
    pub.publish("ret/delete", b"to be deleted", qos=1, retain=True)
    assert existing.message().payload == b"to be deleted"
    pub.publish("ret/delete", b"", qos=1, retain=True)
    msg = existing.message()
    assert (msg.topic, msg.payload, msg.retain) == ("ret/delete", b"", False)
    later = client(broker, "delete-later", protocol)
    later.subscribe("ret/delete", 1)
    later.subscribe("ret/#", 1)
    later.no_message()
    for c in (later, existing, pub):
        c.disconnect()


@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_3_3_1_11_empty_retained_payload_not_stored(broker, protocol):
    """3.1.1 [MQTT-3.3.1-11] (5.0: [MQTT-3.3.1-7]) A zero-byte retained message is never stored
    itself, also on a topic that had no retained message."""
    pub = client(broker, "empty-pub", protocol)
    pub.publish("ret/empty", b"", qos=1, retain=True)
    sub = subscriber(broker, "empty-sub", protocol, "ret/empty")
    sub.no_message()
    sub.disconnect()
    pub.disconnect()


@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_3_3_1_8_non_retained_publish_keeps_retained_message(broker, protocol):
    """5.0 [MQTT-3.3.1-8] (3.1.1: [MQTT-3.3.1-12]) A PUBLISH with RETAIN 0 is not stored and
    neither removes nor replaces the retained message."""
    pub = client(broker, "keep-pub", protocol)
    pub.publish("ret/keep", b"retained", qos=1, retain=True)
    pub.publish("ret/keep", b"live", qos=1, retain=False)
    pub.publish("ret/keep", b"", qos=1, retain=False)
    sub = subscriber(broker, "keep-sub", protocol, "ret/keep")
    msg = sub.message()
    assert (msg.payload, msg.retain) == (b"retained", True)
    sub.no_message()
    sub.disconnect()
    pub.disconnect()


# --- The RETAIN flag on forwarded messages ------------------------------------------------------------

@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_3_3_1_12_forwarded_message_has_retain_0(broker, protocol):
    """5.0 [MQTT-3.3.1-12] (Retain As Published 0; 3.1.1: [MQTT-3.3.1-9]) A retained PUBLISH
    forwarded to an established subscription carries RETAIN 0."""
    sub = subscriber(broker, "fwd-sub", protocol, "ret/fwd")
    pub = client(broker, "fwd-pub", protocol)
    pub.publish("ret/fwd", b"live", qos=1, retain=True)
    msg = sub.message()
    assert (msg.payload, msg.retain) == (b"live", False)
    sub.disconnect()
    pub.disconnect()


def test_mqtt_3_3_1_13_retain_as_published_keeps_retain_flag(broker):
    """5.0 [MQTT-3.3.1-13] With Retain As Published 1 the forwarded RETAIN equals the
    published one: 1 for a retained PUBLISH, 0 for a plain one."""
    sub = client(broker, "rap-sub")
    sub.subscribe("ret/rap", options=options(retain_as_published=True))
    pub = client(broker, "rap-pub")
    pub.publish("ret/rap", b"retained", qos=1, retain=True)
    pub.publish("ret/rap", b"plain", qos=1, retain=False)
    got = [(m.payload, m.retain) for m in (sub.message(), sub.message())]
    assert got == [(b"retained", True), (b"plain", False)]
    sub.disconnect()
    pub.disconnect()


# --- Retain Handling (5.0) ----------------------------------------------------------------------------

def test_mqtt_3_3_1_9_retain_handling_0_sends_retained_on_every_subscribe(broker):
    """5.0 [MQTT-3.3.1-9] Retain Handling 0: the retained messages are sent at each SUBSCRIBE,
    also when the subscription already existed."""
    pub = client(broker, "rh0-pub")
    pub.publish("ret/rh0", b"r", qos=1, retain=True)
    sub = client(broker, "rh0-sub")
    sub.subscribe("ret/rh0", options=options(retain_handling=0))
    assert sub.message().retain
    sub.subscribe("ret/rh0", options=options(retain_handling=0))
    msg = sub.message()
    assert (msg.payload, msg.retain) == (b"r", True)
    sub.no_message()
    sub.disconnect()
    pub.disconnect()


def test_mqtt_3_3_1_10_retain_handling_1_sends_retained_only_for_new_subscription(broker):
    """5.0 [MQTT-3.3.1-10] Retain Handling 1: the retained messages are sent when the
    subscription is new, not when it already existed."""
    pub = client(broker, "rh1-pub")
    pub.publish("ret/rh1", b"r", qos=1, retain=True)
    sub = client(broker, "rh1-sub")
    sub.subscribe("ret/rh1", options=options(retain_handling=1))
    msg = sub.message()
    assert (msg.payload, msg.retain) == (b"r", True)
    sub.subscribe("ret/rh1", options=options(retain_handling=1))
    sub.no_message()
    sub.disconnect()
    pub.disconnect()


def test_mqtt_3_3_1_11_retain_handling_2_never_sends_retained(broker):
    """5.0 [MQTT-3.3.1-11] Retain Handling 2: no retained message at SUBSCRIBE; messages
    published afterwards are delivered normally."""
    pub = client(broker, "rh2-pub")
    pub.publish("ret/rh2", b"r", qos=1, retain=True)
    sub = client(broker, "rh2-sub")
    sub.subscribe("ret/rh2", options=options(retain_handling=2))
    sub.no_message()
    pub.publish("ret/rh2", b"live", qos=1)
    assert sub.message().payload == b"live"
    sub.disconnect()
    pub.disconnect()


# --- Topics beginning with $ --------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", VERSIONS)
def test_mqtt_4_7_2_1_dollar_topics_not_matched_by_leading_wildcards(broker_factory, protocol):
    """[MQTT-4.7.2-1] (both versions) Filters starting with `#` or `+` do not match topics
    starting with `$`: with `$SYS` published every second, `#` and `+/broker/#` get neither the
    live nor the retained `$SYS` messages, while `$SYS/#` gets both."""
    broker = broker_factory("[mqtt]\nsys_interval = 1\n")
    wild = client(broker, "dollar-wild", protocol)
    wild.subscribe("#", 0)
    wild.subscribe("+/broker/#", 0)
    sys_sub = client(broker, "dollar-sys", protocol)
    sys_sub.subscribe("$SYS/#", 0)
    # A live (RETAIN 0) $SYS message was routed after both subscriptions existed...
    while True:
        msg = sys_sub.message(timeout=SLOW)
        assert msg.topic.startswith("$SYS/broker/")
        if not msg.retain:
            break
    # ...and did not reach `wild` before this later round trip.
    wild.no_message()

    # Retained $SYS messages now exist: `$SYS/...` gets them at SUBSCRIBE, `#` does not.
    retained = client(broker, "dollar-retained", protocol)
    retained.subscribe("$SYS/broker/uptime", 0)
    msg = retained.message()
    assert (msg.topic, msg.retain) == ("$SYS/broker/uptime", True)
    late_wild = client(broker, "dollar-late-wild", protocol)
    late_wild.subscribe("#", 0)
    late_wild.subscribe("+/broker/uptime", 0)
    late_wild.no_message()
    for c in (wild, sys_sub, retained, late_wild):
        c.disconnect()
