"""Shared subscriptions ($share/{group}/{filter}) [MQTT-4.8.2]: from 3.1.1 and 5.0 clients, each
message to exactly one member, the configured strategies, and what happens to a message in flight
to a member whose session ends.

Messages that reach members on the group's filter go to one queue, tagged with the member's name, so
a test can see who got what. Every publication is QoS 1 and awaits its PUBACK, so it has been
routed before the next step; absence is proven per member with `Client.no_message` (a round trip
through the broker on that member's own connection).
"""
import collections
import queue

import paho.mqtt.client as mqtt
import pytest

import raw_client as raw
from mqtt_helpers import TIMEOUT, Client


class Group:
    """The members of one share group and the queue of what they received through it."""

    def __init__(self, broker, name="g", topic_filter="work/#"):
        self.broker = broker
        self.topic_filter = topic_filter
        self.shared_filter = f"$share/{name}/{topic_filter}"
        self.received = queue.Queue()
        self.members = {}

    def join(self, client_id, protocol=mqtt.MQTTv5, qos=1):
        c = Client(self.broker, client_id=client_id, protocol=protocol)

        def on_message(_client, _userdata, msg, name=client_id):
            if mqtt.topic_matches_sub(self.topic_filter, msg.topic):
                self.received.put((name, msg))
            else:
                c.messages.put(msg)  # no_message's markers, wills

        c.client.on_message = on_message
        c.connect()
        assert [rc.value for rc in c.subscribe(self.shared_filter, qos)] == [qos]
        self.members[client_id] = c
        return c

    def collect(self, count):
        """The next `count` deliveries as (member, message)."""
        return [self.received.get(timeout=TIMEOUT) for _ in range(count)]

    def assert_nothing_more(self):
        for c in self.members.values():
            c.no_message()
        assert self.received.empty(), list(self.received.queue)


def strategy_broker(broker_factory, strategy):
    return broker_factory(config_text=f'[mqtt]\nshared_subscription_strategy = "{strategy}"\n')


def group_of_three(broker_factory, strategy, prefix):
    """A broker with `strategy` and a group of three members named prefix-a, -b, -c."""
    broker = strategy_broker(broker_factory, strategy)
    group = Group(broker)
    for name in ("a", "b", "c"):
        group.join(f"{prefix}-{name}")
    return broker, group


def assert_one_member_each(group, count, key, keys):
    """The `count` messages fall into `keys` kinds by `key`, each served by one member."""
    members = collections.defaultdict(set)
    for name, msg in group.collect(count):
        members[key(msg)].add(name)
    assert len(members) == keys
    assert all(len(m) == 1 for m in members.values()), dict(members)
    group.assert_nothing_more()


def publisher(broker, client_id="publisher"):
    p = Client.connected(broker, client_id=client_id, protocol=mqtt.MQTTv5)
    return p


def recipients_in_order(deliveries):
    """Maps payload index → member, for payloads b"<index>"."""
    by_index = {int(msg.payload): name for name, msg in deliveries}
    return [by_index[i] for i in sorted(by_index)]


# ---- basics ------------------------------------------------------------------------------------

def test_mqtt_4_8_2_each_message_to_exactly_one_member(broker):
    """[MQTT-4.8.2-1][MQTT-4.8.2-2] `$share/g/work/#` from a 3.1.1 and a 5.0 client: each message
    goes to exactly one member of the group; a plain subscriber of the same filter gets every one."""
    group = Group(broker)
    group.join("member-311", protocol=mqtt.MQTTv311)
    group.join("member-5", protocol=mqtt.MQTTv5)
    plain = Client.connected(broker, client_id="plain", protocol=mqtt.MQTTv311)
    plain.subscribe("work/#", 1)
    pub = publisher(broker)
    for i in range(10):
        pub.publish(f"work/{i % 3}", str(i).encode(), qos=1)
    deliveries = group.collect(10)
    assert sorted(int(msg.payload) for _, msg in deliveries) == list(range(10))
    assert {name for name, _ in deliveries} == {"member-311", "member-5"}
    assert sorted(int(plain.message().payload) for _ in range(10)) == list(range(10))
    group.assert_nothing_more()
    plain.no_message()


def test_two_groups_each_get_a_copy(broker):
    """Every group matching a message gets one copy of it, whatever the other groups do."""
    a = Group(broker, name="a")
    a.join("a1")
    a.join("a2")
    b = Group(broker, name="b")
    b.join("b1", protocol=mqtt.MQTTv311)
    pub = publisher(broker)
    for i in range(4):
        pub.publish("work/x", str(i).encode(), qos=1)
    assert sorted(int(m.payload) for _, m in a.collect(4)) == [0, 1, 2, 3]
    assert sorted(int(m.payload) for _, m in b.collect(4)) == [0, 1, 2, 3]
    a.assert_nothing_more()
    b.assert_nothing_more()


def test_mqtt_4_8_2_3_granted_qos_respected(broker):
    """[MQTT-4.8.2-3] A member subscribed at QoS 0 receives a QoS 2 message at QoS 0."""
    group = Group(broker)
    group.join("only", qos=0)
    pub = publisher(broker)
    pub.publish("work/q", b"0", qos=2)
    ((_, msg),) = group.collect(1)
    assert msg.qos == 0
    group.assert_nothing_more()


def test_shared_subscription_gets_no_retained_messages(broker):
    """[MQTT-4.8.2] Retained messages are not sent to a session when it joins a share group."""
    pub = publisher(broker)
    pub.publish("work/r", b"retained", qos=1, retain=True)
    group = Group(broker)
    group.join("late")
    group.assert_nothing_more()


# ---- strategies --------------------------------------------------------------------------------

def test_strategy_round_robin(broker_factory):
    """round_robin: with three members, message i goes to the same member as message i + 3, and any
    three consecutive messages go to three different members."""
    broker, group = group_of_three(broker_factory, "round_robin", "rr")
    pub = publisher(broker)
    for i in range(9):
        pub.publish("work/t", str(i).encode(), qos=1)
    order = recipients_in_order(group.collect(9))
    assert len(set(order[:3])) == 3
    assert order == order[:3] * 3
    group.assert_nothing_more()


def test_strategy_hash_clientid(broker_factory):
    """hash_clientid: all the messages of one publisher, on any topic, go to one member."""
    broker, group = group_of_three(broker_factory, "hash_clientid", "hc")
    publishers = [publisher(broker, f"publisher-{n}") for n in range(4)]
    for i in range(6):
        for n, p in enumerate(publishers):
            p.publish(f"work/{i}", f"{n}".encode(), qos=1)
    assert_one_member_each(group, 24, key=lambda msg: msg.payload, keys=4)


def test_strategy_hash_topic(broker_factory):
    """hash_topic: all the messages of one topic, from any publisher, go to one member."""
    broker, group = group_of_three(broker_factory, "hash_topic", "ht")
    publishers = [publisher(broker, f"publisher-{n}") for n in range(2)]
    for i in range(4):
        for topic in ("work/a", "work/b", "work/c", "work/d", "work/e"):
            publishers[i % 2].publish(topic, b"x", qos=1)
    assert_one_member_each(group, 20, key=lambda msg: msg.topic, keys=5)


def test_strategy_sticky(broker_factory):
    """sticky: every message goes to the same member while it stays in the group; when it leaves,
    another member takes over, again for every message."""
    broker, group = group_of_three(broker_factory, "sticky", "st")
    publishers = [publisher(broker, f"publisher-{n}") for n in range(2)]
    for i in range(10):
        publishers[i % 2].publish(f"work/{i}", str(i).encode(), qos=1)
    first = {name for name, _ in group.collect(10)}
    assert len(first) == 1
    (chosen,) = first
    leaving = group.members.pop(chosen)
    leaving.client.unsubscribe(group.shared_filter)
    leaving.unsubacks.get(timeout=TIMEOUT)
    for i in range(10):
        publishers[i % 2].publish(f"work/{i}", str(i).encode(), qos=1)
    second = {name for name, _ in group.collect(10)}
    assert len(second) == 1 and second != first
    group.assert_nothing_more()
    leaving.no_message()


def test_strategy_random(broker_factory):
    """random: each message goes to exactly one member."""
    broker = strategy_broker(broker_factory, "random")
    group = Group(broker)
    for name in ("rnd-a", "rnd-b", "rnd-c"):
        group.join(name, protocol=mqtt.MQTTv311 if name == "rnd-b" else mqtt.MQTTv5)
    pub = publisher(broker)
    for i in range(30):
        pub.publish("work/t", str(i).encode(), qos=1)
    deliveries = group.collect(30)
    assert sorted(int(msg.payload) for _, msg in deliveries) == list(range(30))
    assert {name for name, _ in deliveries} <= set(group.members)
    group.assert_nothing_more()


# ---- a member whose session ends with a message in flight ---------------------------------------

def raw_member(broker, version, qos, client_id="raw-member"):
    """A raw client with a clean session that joins the group and will never acknowledge. It has a
    will on wills/<client_id>, so the test can see when the broker has processed its connection
    loss (the will is published just before its session ends)."""
    will_topic, will_payload = f"wills/{client_id}", b"gone"
    if version == 5:
        payload = raw.string(client_id) + b"\x00" + raw.string(will_topic) + raw.string(will_payload)
    else:
        payload = raw.string(client_id) + raw.string(will_topic) + raw.string(will_payload)
    member = raw.RawClient(broker)
    member.send(raw.connect(client_id, version=version, flags=0x02 | 0x04, payload=payload))
    first, body = member.read_packet()
    assert first == 0x20 and body[1] == 0x00
    member.send(raw.subscribe("$share/g/work/#", options=qos, version=version))
    first, body = member.read_packet()
    assert first == 0x90 and body[-1] == qos
    return member


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_mqtt_4_8_2_qos1_in_flight_goes_to_another_member(broker, version):
    """[MQTT-4.8.2] (the SHOULD next to [MQTT-4.8.2-5]) A QoS 1 message in flight to a member that
    never acknowledges it is sent to another member of the group when that member's session ends
    (clean session, connection dropped)."""
    member = raw_member(broker, version, qos=1)
    pub = publisher(broker)
    pub.publish("work/job", b"job 1", qos=1)
    message = raw.parse_publish(*member.read_packet(), version=version)
    assert (message["topic"], message["qos"], message["payload"]) == (b"work/job", 1, b"job 1")

    group = Group(broker)
    other = group.join("other")
    other.subscribe("wills/#", 0)
    member.close()  # dropped without DISCONNECT and without PUBACK
    assert other.message().topic == "wills/raw-member"
    ((name, msg),) = group.collect(1)
    assert (name, msg.topic, msg.payload, msg.qos) == ("other", "work/job", b"job 1", 1)
    group.assert_nothing_more()


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_mqtt_4_8_2_5_qos2_in_flight_not_sent_elsewhere(broker, version):
    """[MQTT-4.8.2-5] A QoS 2 message in flight to a member whose session ends before it reconnects
    is not sent to any other member."""
    member = raw_member(broker, version, qos=2)
    pub = publisher(broker)
    pub.publish("work/job", b"job 2", qos=2)
    message = raw.parse_publish(*member.read_packet(), version=version)
    assert (message["qos"], message["payload"]) == (2, b"job 2")

    group = Group(broker)
    other = group.join("other", qos=2)
    other.subscribe("wills/#", 0)
    member.close()  # dropped without PUBREC
    assert other.message().topic == "wills/raw-member"
    group.assert_nothing_more()


def test_mqtt_4_8_2_6_refused_message_not_sent_elsewhere(broker):
    """[MQTT-4.8.2-6] A member that answers PUBACK 0x80 refuses the message: it is discarded, not
    sent to another member, even when that member's session then ends."""
    member = raw_member(broker, 5, qos=1)
    pub = publisher(broker)
    pub.publish("work/job", b"job 3", qos=1)
    message = raw.parse_publish(*member.read_packet())
    group = Group(broker)
    other = group.join("other")
    other.subscribe("wills/#", 0)
    member.send(bytes([0x40, 3]) + message["packet_id"].to_bytes(2, "big") + b"\x80")
    member.close()
    assert other.message().topic == "wills/raw-member"
    group.assert_nothing_more()
