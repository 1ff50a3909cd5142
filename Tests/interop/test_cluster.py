"""The cluster (issue 12): three `starling` processes on one real PostgreSQL behave as one
broker — membership and its endpoints, the node links' secret, delivery across nodes with
every MQTT 5.0 subscription option, retained messages, ingest rows and ids. Clients are
paho-mqtt and the mosquitto tools. The three nodes are shared by the tests of this module."""
import hashlib
import hmac
import os
import select
import socket
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions

from cluster import ADMIN_TOKEN, SECRET, Cluster, postgres_url
from conftest import BINARY
from mqtt_helpers import Client, v5_properties
import types

from raw_client import RawClient, connect, packet, parse_properties, parse_publish, props, string

V5 = mqtt.MQTTv5


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(size=3, extra_env={"STARLING_MQTT_SYS_INTERVAL": "1"})
    yield c
    c.stop()


def client(cluster, node, client_id, protocol=V5, clean=True):
    return Client.connected(cluster[node], client_id=client_id, protocol=protocol, clean=clean)


def stored_session(node, client_id, expiry, resumed=False):
    """A 5.0 client that keeps its session (`expiry`: the CONNECT's properties), connected;
    with `resumed`, it finds its session there (session present)."""
    c = Client(node, client_id=client_id, protocol=V5, clean=False)
    flags, _, _ = c.connect(properties=expiry)
    if resumed:
        assert flags.session_present
    return c


def device_with_will(node, client_id, will_topic):
    """A clean 3.1.1 client whose will (QoS 1, "gone") goes to `will_topic`, connected."""
    c = Client(node, client_id=client_id, protocol=mqtt.MQTTv311, clean=True)
    c.client.will_set(will_topic, b"gone", qos=1)
    c.connect()
    return c


def subscriber_and_publisher(cluster, sub_node, pub_node, name, filter_):
    """`name`-sub on `sub_node` subscribed to `filter_` at QoS 1, and `name`-pub on `pub_node`."""
    s = client(cluster, sub_node, f"{name}-sub")
    s.subscribe(filter_, qos=1)
    return s, client(cluster, pub_node, f"{name}-pub")


# ---- membership -------------------------------------------------------------------------------

def test_every_node_lists_every_node(cluster):
    """GET /api/v1/nodes on each node: the three nodes alive with their addresses, and this node's
    links to both peers up in both directions."""
    for node_id, node in cluster.nodes.items():
        summary = cluster.api(node_id, "/api/v1/nodes")
        assert summary["node"] == node_id
        nodes = {n["nodeID"]: n for n in summary["nodes"]}
        assert set(nodes) == {"n1", "n2", "n3"}
        for peer_id, peer in cluster.nodes.items():
            assert nodes[peer_id]["mqttAddress"] == f"127.0.0.1:{peer.port}"
            assert nodes[peer_id]["clusterAddress"] == f"127.0.0.1:{peer.ports['cluster']}"
            assert nodes[peer_id]["leaseRemainingMilliseconds"] > 0
            assert nodes[peer_id]["state"] == "alive"
        assert {(l["peer"], l["direction"]) for l in summary["links"] if l["up"]} == {
            (p, d) for p in cluster.nodes if p != node_id for d in ("inbound", "outbound")}


def test_ctl_cluster_nodes(cluster):
    """`starling ctl cluster nodes` prints one line per node (this one starred) and the links."""
    result = subprocess.run([BINARY, "ctl", "cluster", "nodes", "--url", f"http://127.0.0.1:{cluster['n2'].http_port}",
                             "--token", ADMIN_TOKEN], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("\t")[:2] for line in lines[:3]] == [["n1", "alive"], ["n2*", "alive"], ["n3", "alive"]]
    assert sum(1 for line in lines if line.startswith("link\t") and line.endswith("\tup")) == 4


def test_readiness_has_a_cluster_check(cluster):
    """/readyz passes with a `cluster` check naming this node's lease and its peers; /metrics
    counts the live nodes and the links."""
    status, body = cluster["n1"].get("/readyz")
    assert status == 200, body
    check = next(c for c in __import__("json").loads(body)["checks"] if c["name"] == "cluster")
    assert check["passing"] and "lease held by n1" in check["detail"] and "n2 alive" in check["detail"]
    status, metrics = cluster["n1"].get("/metrics")
    assert "starling_cluster_nodes 3" in metrics
    assert "starling_cluster_links_up 4" in metrics
    assert "starling_cluster_lease_held 1" in metrics


def test_sys_topics_and_metrics_count_the_cluster(cluster):
    """$SYS/broker/cluster/nodes and .../links name the live nodes and this node's links; after a
    message crosses, /metrics counts it on both sides."""
    s = client(cluster, "n1", "sys-watch")
    s.subscribe("$SYS/broker/cluster/#", qos=0)
    seen = {}
    while seen.get("nodes") != b"3" or seen.get("links") != b"2":
        m = s.message()
        seen[m.topic.rsplit("/", 1)[-1] if "/messages/" not in m.topic else m.topic] = m.payload
    sub = client(cluster, "n2", "sys-sub")
    sub.subscribe("sys/t", qos=0)
    pub = client(cluster, "n1", "sys-pub")
    pub.publish("sys/t", b"x", qos=1)
    assert sub.message().payload == b"x"
    forwarded = [line for line in cluster["n1"].get("/metrics")[1].splitlines() if line.startswith("starling_cluster_forwarded_total ")]
    received = [line for line in cluster["n2"].get("/metrics")[1].splitlines() if line.startswith("starling_cluster_received_total ")]
    assert forwarded and float(forwarded[0].split()[1]) >= 1
    assert received and float(received[0].split()[1]) >= 1
    for c in (s, sub, pub):
        c.disconnect()


def test_a_second_live_node_with_the_same_id_refuses_to_start(cluster):
    """A process started with the id of a live node exits 2, naming server.node_id and the
    live node's addresses; the live node is untouched."""
    env = {**os.environ, "STARLING_CLUSTER_SECRET": SECRET}
    result = subprocess.run([BINARY, "serve", "--postgres", cluster.url, "--node-id", "n2", "--cluster", "127.0.0.1:0",
                             "--mqtt", "127.0.0.1:0"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "server.node_id" in result.stderr and f"127.0.0.1:{cluster['n2'].ports['cluster']}" in result.stderr
    summary = cluster.api("n1", "/api/v1/nodes")
    assert [n["state"] for n in summary["nodes"] if n["nodeID"] == "n2"] == ["alive"]


def test_cluster_needs_postgres(tmp_path):
    """--cluster with the SQLite store is a configuration error naming cluster.listen."""
    result = subprocess.run([BINARY, "serve", "--data-dir", str(tmp_path), "--cluster", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "cluster.listen" in result.stderr and "storage.postgres_url" in result.stderr


def test_a_cluster_listener_off_loopback_needs_the_secret(tmp_path):
    """cluster.listen on 0.0.0.0 without cluster.secret: exit 2 naming cluster.secret; a short
    secret is refused without being printed."""
    url = postgres_url("unused")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARLING_CLUSTER")}
    result = subprocess.run([BINARY, "serve", "--postgres", url, "--cluster", "0.0.0.0:0", "--mqtt", "127.0.0.1:0"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2 and "cluster.secret" in result.stderr
    result = subprocess.run([BINARY, "serve", "--postgres", url, "--cluster", "0.0.0.0:0", "--mqtt", "127.0.0.1:0"],
                            capture_output=True, text=True, env={**env, "STARLING_CLUSTER_SECRET": "tooshort"}, timeout=60)
    assert result.returncode == 2 and "cluster.secret" in result.stderr and "tooshort" not in result.stderr


# ---- the node links' handshake ------------------------------------------------------------------

METHOD = "STARLING-CLUSTER-HMAC-SHA256"


def proof(secret, role, *fields):
    message = b"starling-cluster-v1" + role
    for field in fields:
        message += len(field).to_bytes(2, "big") + field
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def handshake(port, secret, dialer_id="intruder"):
    """Dials a cluster listener as a node would (docs/architecture.md, "The link handshake": CONNECT with a nonce, AUTH with the
    listener's nonce and proof, AUTH with ours); returns the CONNACK reason code and what the
    listener sent."""
    nonce = os.urandom(32)
    raw = RawClient(types.SimpleNamespace(host="127.0.0.1", port=port))
    connect_props = props(b"\x15" + string(METHOD), b"\x16" + len(nonce).to_bytes(2, "big") + nonce)
    body = string("MQTT") + b"\x05\x02\x00\x00" + connect_props + string(dialer_id)
    raw.send(packet(0x10, body))
    first, data = raw.read_packet()
    assert first == 0xF0, f"expected AUTH, got {first:#x}"
    assert data[0] == 0x18  # Continue authentication
    auth = dict(parse_properties(data, 1)[0])[0x16]  # Authentication Data: nonce L ‖ listener proof
    listener_nonce, listener_proof = auth[:32], auth[32:]
    mine = proof(secret, b"D", listener_nonce, nonce, dialer_id.encode(), b"n1")
    raw.send(packet(0xF0, b"\x18" + props(b"\x15" + string(METHOD), b"\x16" + len(mine).to_bytes(2, "big") + mine)))
    first, data = raw.read_packet()
    assert first == 0x20
    raw.close()
    return data[1], listener_proof, listener_nonce, nonce


def test_a_peer_that_proves_the_secret_is_admitted(cluster):
    """A dialer that knows the secret gets CONNACK 0x00, and the listener's own proof checks out
    (both sides prove the secret; neither sends it)."""
    code, listener_proof, listener_nonce, nonce = handshake(cluster["n1"].ports["cluster"], SECRET, dialer_id="visitor")
    assert code == 0x00
    assert listener_proof == proof(SECRET, b"L", nonce, listener_nonce, b"n1", b"visitor")


def test_a_peer_without_the_secret_is_refused_and_logged(cluster):
    """A wrong secret: CONNACK 0x87 (Not authorized), the connection closed, and the refusal in
    the node's log with the peer's address."""
    code, *_ = handshake(cluster["n1"].ports["cluster"], "not-the-cluster-secret")
    assert code == 0x87
    cluster["n1"].wait_for_log(["refused cluster peer 127.0.0.1:"])
    status, metrics = cluster["n1"].get("/metrics")
    assert "starling_cluster_links_refused_total 0\n" not in metrics


# ---- delivery across nodes ----------------------------------------------------------------------

def test_qos_0_1_2_reach_subscribers_on_other_nodes(cluster):
    """A PUBLISH on n1 reaches subscribers on n2 (5.0) and n3 (3.1.1) at min(published,
    subscribed) QoS, with wildcards."""
    s2 = client(cluster, "n2", "x-sub2")
    s3 = client(cluster, "n3", "x-sub3", protocol=mqtt.MQTTv311)
    s2.subscribe("x/#", qos=2)
    s3.subscribe("x/+/t", qos=1)
    pub = client(cluster, "n1", "x-pub")
    for qos in (0, 1, 2):
        pub.publish(f"x/{qos}/t", f"q{qos}".encode(), qos=qos)
        m2, m3 = s2.message(), s3.message()
        assert (m2.topic, m2.payload, m2.qos) == (f"x/{qos}/t", f"q{qos}".encode(), qos)
        assert (m3.topic, m3.payload, m3.qos) == (f"x/{qos}/t", f"q{qos}".encode(), min(qos, 1))
    for c in (s2, s3, pub):
        c.disconnect()


def test_mosquitto_clients_across_nodes(cluster):
    """mosquitto_sub on n3 receives what mosquitto_pub sends to n2."""
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(cluster["n3"].port), "-t", "mq/#", "-q", "1", "-C", "1", "-v",
                            "-i", "mq-sub", "-W", "30"], stdout=subprocess.PIPE, text=True)
    try:
        # mosquitto_sub's own subscription first (a process started, not yet subscribed, would
        # miss the message): n3 lists it with its filter.
        deadline = time.monotonic() + 30
        while not any(c["client_id"] == "mq-sub" and c["subscriptions"] == ["mq/#"]
                      for c in cluster.api("n3", "/api/v1/clients")["clients"]):
            assert time.monotonic() < deadline, "mosquitto_sub did not subscribe on n3"
            time.sleep(0.05)  # the subscription has no notification: poll it
        # The subscription is known cluster-wide once n3 has it: wait for its route on n2.
        c = client(cluster, "n3", "mq-probe")
        c.subscribe("mq/#", qos=1)  # SUBACK: every peer routes mq/# to n3
        subprocess.run(["mosquitto_pub", "-p", str(cluster["n2"].port), "-t", "mq/a", "-m", "hi", "-q", "1"], check=True, timeout=30)
        assert c.message().payload == b"hi"
        out, _ = sub.communicate(timeout=30)
        assert out.strip() == "mq/a hi"
        c.disconnect()
    finally:
        if sub.poll() is None:
            sub.kill()


def test_subscription_options_hold_across_nodes(cluster):
    """Overlapping subscriptions give one copy with every Subscription Identifier; Retain As
    Published keeps RETAIN; No Local holds for the publisher's own subscription; the Message
    Expiry Interval arrives decremented or equal; user properties and content type pass."""
    s = Client.connected(cluster["n2"], client_id="opt-sub", protocol=V5)
    s.subscribe("opt/#", options=SubscribeOptions(qos=1), properties=v5_properties(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=1))
    s.subscribe("opt/+", options=SubscribeOptions(qos=1, retainAsPublished=True),
                properties=v5_properties(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=2))
    p = client(cluster, "n1", "opt-pub")
    p.subscribe("opt/#", options=SubscribeOptions(qos=1, noLocal=True))
    properties = v5_properties(PacketTypes.PUBLISH, MessageExpiryInterval=60, ContentType="text/plain", UserProperty=[("k", "v")])
    p.publish("opt/a", b"one", qos=1, retain=True, properties=properties)
    m = s.message()
    assert m.payload == b"one" and m.retain
    assert sorted(m.properties.SubscriptionIdentifier) == [1, 2]
    assert 0 < m.properties.MessageExpiryInterval <= 60
    assert m.properties.ContentType == "text/plain" and m.properties.UserProperty == [("k", "v")]
    p.no_message()  # No Local: the publisher does not get its own message back
    p.publish("opt/a", b"", qos=1, retain=True)  # clear the retained message
    s.message()
    for c in (s, p):
        c.disconnect()


def test_topic_aliases_are_resolved_before_forwarding(cluster):
    """A publisher on n1 that uses a topic alias: the subscriber on n3 gets the topic name."""
    s, p = subscriber_and_publisher(cluster, "n3", "n1", "alias", "alias/topic")
    p.publish("alias/topic", b"first", qos=1, properties=v5_properties(PacketTypes.PUBLISH, TopicAlias=3))
    p.publish("", b"second", qos=1, properties=v5_properties(PacketTypes.PUBLISH, TopicAlias=3))
    assert [(m.topic, m.payload) for m in (s.message(), s.message())] == [("alias/topic", b"first"), ("alias/topic", b"second")]
    for c in (s, p):
        c.disconnect()


def test_order_per_publisher_is_kept_across_nodes(cluster):
    """300 QoS 1 messages from one publisher on n1 arrive at n2 in order."""
    s, p = subscriber_and_publisher(cluster, "n2", "n1", "order", "order/t")
    for i in range(300):
        p.publish("order/t", str(i).encode(), qos=1, wait=False)
    assert [int(s.message().payload) for _ in range(300)] == list(range(300))
    for c in (s, p):
        c.disconnect()


def test_unsubscribe_stops_delivery_across_nodes(cluster):
    """After UNSUBACK on n2, nothing more is forwarded to it for that filter."""
    s, p = subscriber_and_publisher(cluster, "n2", "n1", "unsub", "unsub/t")
    p.publish("unsub/t", b"before", qos=1)
    assert s.message().payload == b"before"
    s.client.unsubscribe("unsub/t")
    s.unsubacks.get(timeout=10)
    p.publish("unsub/t", b"after", qos=1)
    s.no_message()
    for c in (s, p):
        c.disconnect()


def test_shared_subscription_gets_one_copy_in_the_cluster(cluster):
    """Members of one $share group on n2 (5.0) and n3 (3.1.1); 40 messages from n1: each
    delivered once in the whole cluster, and the strategy (round_robin, the default) takes turns
    between the two nodes: 20 each."""
    members = [client(cluster, "n2", "share-n2"), client(cluster, "n3", "share-n3", protocol=mqtt.MQTTv311)]
    for m in members:
        m.subscribe("$share/g/share/t", qos=1)
    p = client(cluster, "n1", "share-pub")
    for i in range(40):
        p.publish("share/t", str(i).encode(), qos=1)
    # Each message arrives once, at one member or the other: gather until all 40 are in.
    import queue
    import time
    got = []
    per_member = [0, 0]
    deadline = time.monotonic() + 30
    while len(got) < 40 and time.monotonic() < deadline:
        for i, m in enumerate(members):
            try:
                got.append(int(m.messages.get(timeout=0.05).payload))
                per_member[i] += 1
            except queue.Empty:
                pass
    assert sorted(got) == list(range(40))
    assert per_member == [20, 20]
    for m in members:
        m.no_message()
    for c in (*members, p):
        c.disconnect()


# ---- retained messages, ingest, ids ------------------------------------------------------------

def test_retained_message_set_on_one_node_is_served_by_another(cluster):
    """After the PUBACK of a retained PUBLISH on n1, a SUBSCRIBE on n3 receives it; after the
    PUBACK of its deletion, a new SUBSCRIBE on n2 receives nothing."""
    p = client(cluster, "n1", "ret-pub")
    p.publish("ret/state", b"on", qos=1, retain=True)
    s = client(cluster, "n3", "ret-sub")
    s.subscribe("ret/#", qos=1)
    m = s.message()
    assert (m.topic, m.payload, m.retain) == ("ret/state", b"on", True)
    p.publish("ret/state", b"", qos=1, retain=True)
    s2 = client(cluster, "n2", "ret-sub2")
    s2.subscribe("ret/#", qos=1)
    s2.no_message()
    for c in (p, s, s2):
        c.disconnect()


def test_each_message_is_one_row_whichever_node_received_it(cluster):
    """Publishers on n1 and n2: one `messages` row per message, node_id naming the node."""
    for node in ("n1", "n2"):
        p = client(cluster, node, f"ingest-{node}")
        for i in range(5):
            p.publish(f"ingest/{node}", f"{node}-{i}".encode(), qos=1)
        p.disconnect()
    rows = cluster.query("SELECT node_id, count(*), count(DISTINCT convert_from(payload, 'UTF8')) FROM messages "
                         "WHERE topic LIKE 'ingest/%' GROUP BY node_id ORDER BY node_id")
    assert rows == [["n1", "5", "5"], ["n2", "5", "5"]]


def test_ids_never_collide_between_nodes(cluster):
    """Persistent sessions on n2 and n3 queue messages published on both nodes while offline;
    each gets exactly its messages back (a message id reused by two nodes would hand one
    session the other's payload)."""
    subs = {}
    for node in ("n2", "n3"):
        s = Client.connected(cluster[node], client_id=f"ids-{node}", protocol=mqtt.MQTTv311, clean=False)
        s.subscribe("ids/#", qos=1)
        s.disconnect()
        subs[node] = s
    for node in ("n2", "n3"):
        p = client(cluster, node, f"ids-pub-{node}")
        p.publish(f"ids/{node}", f"from-{node}".encode(), qos=1)
        p.disconnect()
    for node, s in subs.items():
        again = Client.connected(cluster[node], client_id=f"ids-{node}", protocol=mqtt.MQTTv311, clean=False)
        assert sorted((again.message().payload, again.message().payload)) == [b"from-n2", b"from-n3"]
        again.no_message()
        again.disconnect()
    ids = cluster.query("SELECT id FROM message_payloads")
    assert len(ids) == len({i[0] for i in ids})


# ---- persistent sessions across nodes ----------------------------------------------------------

def test_persistent_session_resumes_on_another_node(cluster):
    """A 3.1.1 session made on n1 with Clean Session 0, disconnected; messages published on n3
    meanwhile; the client comes back through n2: session present, its subscription holds, the
    queued messages arrive in order, then new ones published on n1."""
    first = Client.connected(cluster["n1"], client_id="roamer", protocol=mqtt.MQTTv311, clean=False)
    first.subscribe("roam/#", qos=1)
    first.disconnect()
    p3 = client(cluster, "n3", "roam-pub3")
    for i in range(3):
        p3.publish("roam/t", f"queued-{i}".encode(), qos=1)
    again = Client(cluster["n2"], client_id="roamer", protocol=mqtt.MQTTv311, clean=False)
    flags, rc, _ = again.connect()
    assert flags.session_present
    assert [again.message().payload for _ in range(3)] == [b"queued-0", b"queued-1", b"queued-2"]
    p1 = client(cluster, "n1", "roam-pub1")
    p1.publish("roam/t", b"new", qos=1)
    assert again.message().payload == b"new"
    again.no_message()
    for c in (again, p1, p3):
        c.disconnect()


def test_a_client_connected_on_one_node_is_taken_over_from_another(cluster):
    """[MQTT-3.1.4-3] A 5.0 client connected on n1 connects again on n2: the n1 connection gets
    DISCONNECT 0x8E (Session taken over); n2 resumes the session (session present) and its
    subscription receives what n3 publishes."""
    expiry = v5_properties(PacketTypes.CONNECT, SessionExpiryInterval=600)
    old = stored_session(cluster["n1"], "mover", expiry)
    old.subscribe("move/#", qos=1)
    new = Client(cluster["n2"], client_id="mover", protocol=V5, clean=False)
    flags, rc, _ = new.connect(properties=expiry)
    assert flags.session_present
    rc, _ = old.disconnects.get(timeout=10)
    assert rc.value == 0x8E
    old.client.loop_stop()
    p = client(cluster, "n3", "move-pub")
    p.publish("move/x", b"after", qos=1)
    assert new.message().payload == b"after"
    assert cluster["n1"].wait_for_log(["session taken over by node n2"])
    for c in (new, p):
        c.disconnect()


def test_simultaneous_connects_of_one_client_id_on_two_nodes_leave_one_owner(cluster):
    """Issue 13: CONNECTs of one client id (5.0, a persistent session) written to n1 and n2 at the
    same moment, ten times. Each time exactly one connection is served: the other is refused
    (CONNACK 0x88: a claim with a later epoch crossed its own), taken over (DISCONNECT 0x8E), or
    closed before its CONNACK (taken over while its CONNACK waited for its commit; nothing may
    precede a CONNACK [MQTT-3.2.0-1]); the one left answers PINGREQ, and the session row names
    its node."""
    expiry = props(b"\x11" + (600).to_bytes(4, "big"))
    for _ in range(10):
        raws = {n: RawClient(cluster[n]) for n in ("n1", "n2")}
        message = connect("twin", version=5, flags=0x00, properties=expiry)
        for raw in raws.values():
            raw.send(message)
        acks = {}
        for n, raw in raws.items():
            try:
                acks[n] = raw.read_packet()
            except ConnectionError:  # taken over while its CONNACK waited for its commit
                acks[n] = None
        assert all(a is None or a[0] == 0x20 for a in acks.values()), acks
        accepted = [n for n, a in acks.items() if a is not None and a[1][1] == 0x00]
        assert all(acks[n] is None or acks[n][1][1] == 0x88 for n in raws if n not in accepted), acks
        if len(accepted) == 2:  # one after the other: the later claim takes the session over
            ready = [n for n in accepted if raws[n].buffer] or \
                [n for n in accepted if raws[n].sock in select.select([raws[m].sock for m in accepted], [], [], 30)[0]]
            assert len(ready) == 1, f"neither connection was taken over: {acks}"
            loser = ready[0]
            first, body = raws[loser].read_until_closed()[0]
            assert (first, body[0]) == (0xE0, 0x8E)
            accepted.remove(loser)
        else:
            assert raws[[n for n in raws if n not in accepted][0]].read_until_closed() == []
        (winner,) = accepted
        raws[winner].send(b"\xc0\x00")  # PINGREQ
        assert raws[winner].read_packet()[0] == 0xD0
        assert cluster.query("SELECT owner_node FROM sessions WHERE client_id = 'twin'") == [[winner]]
        for raw in raws.values():
            raw.close()


def test_g1_across_nodes_a_node_killed_loses_no_acknowledged_message():
    """G1 across nodes: the PUBACK on n1 follows the commit of the queue rows of every matching
    stored session wherever it is held. n2, which holds an online subscriber's session, is
    frozen (SIGSTOP) while n1 acknowledges 50 QoS 1 messages, then killed (SIGKILL); the
    subscriber resumes on n3 and receives all 50: n1 wrote their rows, not the frozen node."""
    import signal
    c = Cluster(size=3)
    try:
        expiry = v5_properties(PacketTypes.CONNECT, SessionExpiryInterval=3600)
        sub = stored_session(c["n2"], "g1-sub", expiry)
        sub.subscribe("g1/#", qos=1)
        pub = Client.connected(c["n1"], client_id="g1-pub", protocol=V5)
        c["n2"].process.send_signal(signal.SIGSTOP)
        try:
            for i in range(50):
                pub.publish("g1/t", str(i).encode(), qos=1)  # waits for each PUBACK
        finally:
            c["n2"].process.send_signal(signal.SIGKILL)
            c["n2"].process.wait()
        sub.client.loop_stop()
        again = Client(c["n3"], client_id="g1-sub", protocol=V5, clean=False)
        flags, rc, _ = again.connect(properties=expiry)
        assert flags.session_present
        got = set()
        while len(got) < 50:
            got.add(int(again.message().payload))
        assert got == set(range(50))
        again.disconnect()
        pub.disconnect()
        rows = c.query("SELECT count(*) FROM messages WHERE topic = 'g1/t'")
        assert rows == [["50"]]
    finally:
        c.stop()


def test_node_links_over_tls(tmp_path):
    """cluster.tls: two nodes link over TLS with the [tls] certificate and deliver across; a peer
    dialing the cluster port in plain TCP gets no handshake."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.pem",
                    "-days", "2", "-subj", "/CN=starling-node"], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    c = Cluster(size=2, extra_env={"STARLING_CLUSTER_TLS": "true", "STARLING_TLS_CERTIFICATE": str(tmp_path / "node.pem"),
                                   "STARLING_TLS_PRIVATE_KEY": str(tmp_path / "node.key")})
    try:
        s = client(c, "n2", "tls-sub")
        s.subscribe("tls/#", qos=1)
        p = client(c, "n1", "tls-pub")
        p.publish("tls/t", b"secret reading", qos=1)
        assert s.message().payload == b"secret reading"
        for x in (s, p):
            x.disconnect()
        # A CONNECT in the clear is not TLS: the listener never answers it with AUTH.
        import socket as sockets
        with sockets.create_connection(("127.0.0.1", c["n1"].ports["cluster"]), timeout=10) as raw:
            raw.sendall(packet(0x10, string("MQTT") + b"\x05\x02\x00\x00\x00" + string("plain")))
            data = raw.recv(1024)
            assert not data.startswith(b"\xf0")
    finally:
        c.stop()


def test_drain_moves_clients_to_another_node():
    """SIGTERM on n1 (server.drain_wait 4 s, server.reference set): /readyz answers 503 while its
    clients are still connected; then the 5.0 client gets DISCONNECT 0x9C (Use another server)
    with the Server Reference, the 3.1.1 client is closed; n1 exits 0; both resume on n2 with
    what was published meanwhile. A clean client's will is published; a delayed one waits and
    is cancelled when its client resumes on n2."""
    import time
    c = Cluster(size=2, extra_env={"STARLING_SERVER_DRAIN_WAIT": "4", "STARLING_SERVER_REFERENCE": "mqtt-2.example:1883"})
    try:
        expiry = v5_properties(PacketTypes.CONNECT, SessionExpiryInterval=600)
        v5 = stored_session(c["n1"], "drain-v5", expiry)
        v5.subscribe("drain/#", qos=1)
        v3 = Client.connected(c["n1"], client_id="drain-v3", protocol=mqtt.MQTTv311, clean=False)
        v3.subscribe("drain/#", qos=1)
        # Wills: a clean 3.1.1 client's is due when the server closes its connection
        # [MQTT-3.1.2-8]; a 5.0 client's with a Will Delay waits in its session, and its
        # reconnection elsewhere cancels it [MQTT-3.1.3-9].
        watcher = client(c, "n2", "drain-watcher")
        watcher.subscribe("drain-wills/#", qos=1)
        clean = device_with_will(c["n1"], "drain-clean", "drain-wills/clean")
        delayed = Client(c["n1"], client_id="drain-delayed", protocol=V5, clean=False)
        delayed.client.will_set("drain-wills/delayed", b"gone", qos=1,
                                properties=v5_properties(PacketTypes.WILLMESSAGE, WillDelayInterval=600))
        delayed.connect(properties=expiry)
        n1 = c["n1"]
        n1.process.send_signal(__import__("signal").SIGTERM)
        deadline = time.monotonic() + 30
        while n1.get("/readyz")[0] != 503:
            assert time.monotonic() < deadline, "readiness did not turn 503"
            time.sleep(0.02)
        assert v5.disconnects.empty() and v3.disconnects.empty()  # 503 first, clients still served
        rc, props = v5.disconnects.get(timeout=30)
        assert rc.value == 0x9C and props.ServerReference == "mqtt-2.example:1883"
        v3.disconnects.get(timeout=30)
        assert n1.process.wait(timeout=60) == 0
        for x in (v5, v3):
            x.client.loop_stop()
        p = client(c, "n2", "drain-pub")
        p.publish("drain/t", b"while moving", qos=1)
        again5 = Client(c["n2"], client_id="drain-v5", protocol=V5, clean=False)
        flags, _, _ = again5.connect(properties=expiry)
        again3 = Client(c["n2"], client_id="drain-v3", protocol=mqtt.MQTTv311, clean=False)
        flags3, _, _ = again3.connect()
        assert flags.session_present and flags3.session_present
        assert again5.message().payload == b"while moving" and again3.message().payload == b"while moving"
        message = watcher.message()
        assert (message.topic, message.payload) == ("drain-wills/clean", b"gone")
        for x in (clean, delayed):
            x.client.loop_stop()
        back = Client(c["n2"], client_id="drain-delayed", protocol=V5, clean=False)
        assert back.connect(properties=expiry)[0].session_present
        watcher.no_message()  # the delayed will was cancelled by the reconnection
        for x in (again5, again3, p, back, watcher):
            x.disconnect()
    finally:
        c.stop()


def test_a_frozen_owner_wakes_to_find_its_session_taken():
    """G4 with SIGSTOP: n1 holds a connected client's session and is frozen; the client
    connects to n2, which takes the session over without waiting for n1 (session present) and
    receives what n3 publishes. When n1 resumes it lets the session go: its stale connection
    gets DISCONNECT 0x8E, and the session row still names n2 — n1's writes changed nothing."""
    import signal
    c = Cluster(size=3)
    try:
        expiry = v5_properties(PacketTypes.CONNECT, SessionExpiryInterval=600)
        old = Client(c["n1"], client_id="frozen", protocol=V5, clean=False)
        old.connect(properties=expiry, keepalive=5)
        old.subscribe("fence/#", qos=1)
        c["n1"].process.send_signal(signal.SIGSTOP)
        try:
            new = stored_session(c["n2"], "frozen", expiry, resumed=True)
            p = client(c, "n3", "fence-pub")
            p.publish("fence/t", b"to n2", qos=1)
            assert new.message().payload == b"to n2"
        finally:
            c["n1"].process.send_signal(signal.SIGCONT)
        rc, _ = old.disconnects.get(timeout=30)
        assert rc.value == 0x8E
        old.client.loop_stop()
        c["n1"].wait_for_log(["session taken over by node n2"])
        assert c.query("SELECT owner_node FROM sessions WHERE client_id = 'frozen'") == [["n2"]]
        p.publish("fence/t", b"still n2", qos=1)
        assert new.message().payload == b"still n2"
        for x in (new, p):
            x.disconnect()
    finally:
        c.stop()


def test_a_dead_nodes_wills_are_published_once_by_a_survivor():
    """Dead-node clean-up: n2 holds the persistent sessions of a 5.0 and a 3.1.1 client with wills,
    and the connections of a 5.0 and a 3.1.1 client with wills whose sessions are not stored
    (Session Expiry 0, Clean Session 1: their wills live in connection_wills while they are
    connected), and is killed (SIGKILL); once its lease expires (cluster.lease_timeout 2 s) a
    survivor lets its sessions go and publishes each will once in the cluster — n1 and n3 both
    sweep — and a subscriber on n1 receives each exactly once. A client that comes back (to n3)
    before its Will Delay Interval has passed keeps its session and no will is published for it
    [MQTT-3.1.3-9]; a clean client that disconnected normally before the kill gets no will
    [MQTT-3.1.2-10]."""
    import signal
    import time
    c = Cluster(size=3, extra_env={"STARLING_CLUSTER_LEASE_TIMEOUT": "2"})
    try:
        watcher = client(c, "n1", "will-watcher")
        watcher.subscribe("wills/#", qos=1)
        expiry = v5_properties(PacketTypes.CONNECT, SessionExpiryInterval=600)
        doomed = []
        for client_id, protocol in (("doomed-v5", V5), ("doomed-v311", mqtt.MQTTv311), ("returns", V5)):
            d = Client(c["n2"], client_id=client_id, protocol=protocol, clean=False)
            # The client that comes back has a Will Delay Interval: whether its node's lease has
            # already expired when it reconnects or not, it is back before its will is due.
            delay = v5_properties(PacketTypes.WILLMESSAGE, WillDelayInterval=60) if client_id == "returns" else None
            d.client.will_set(f"wills/{client_id}", b"gone", qos=1, properties=delay)
            d.connect(properties=expiry if protocol == V5 else None)
            doomed.append(d)
        for client_id, protocol in (("clean-v5", V5), ("clean-v311", mqtt.MQTTv311), ("polite", mqtt.MQTTv311)):
            d = Client(c["n2"], client_id=client_id, protocol=protocol, clean=True)
            d.client.will_set(f"wills/{client_id}", b"gone", qos=1)
            d.connect()
            doomed.append(d)
        assert c.query("SELECT count(*) FROM connection_wills WHERE node_id = 'n2'") == [["3"]]
        # "polite": a normal DISCONNECT discards the will and its row (a row left behind would be
        # published by the sweepers below: a fifth will). The client waits for nothing after a
        # DISCONNECT, so the test watches the row go before it kills the node.
        doomed.pop().disconnect()
        deadline = time.monotonic() + 30
        while c.query("SELECT count(*) FROM connection_wills WHERE node_id = 'n2'") != [["2"]]:
            assert time.monotonic() < deadline, "the will row of a client that disconnected normally stayed"
            time.sleep(0.05)  # the row has no notification: poll it
        c["n2"].process.send_signal(signal.SIGKILL)
        c["n2"].process.wait()
        for d in doomed:
            d.client.loop_stop()
        back = stored_session(c["n3"], "returns", expiry, resumed=True)
        got = sorted(watcher.message(timeout=30).topic for _ in range(4))
        assert got == ["wills/clean-v311", "wills/clean-v5", "wills/doomed-v311", "wills/doomed-v5"]
        watcher.no_message()
        assert c.query("SELECT count(*) FROM sessions WHERE owner_node = 'n2'") == [["0"]]
        assert c.query("SELECT count(*) FROM connection_wills") == [["0"]]
        back.disconnect()
        watcher.disconnect()
    finally:
        c.stop()


def test_a_database_outage_is_not_a_partition():
    """n1 and n2 both reach PostgreSQL through one proxy the test cuts: no node holds its lease,
    none hears that a peer does, so it is an outage, not a partition — no node takes anything
    over, and each keeps its clients: QoS 0 still flows from n1 to a subscriber on n2 over the
    link. When the database is back both nodes are ready again and say so."""
    import urllib.parse
    from test_store_outage import Proxy
    c = Cluster(size=0)
    url = urllib.parse.urlsplit(c.url)
    proxy = Proxy(url.hostname, url.port)
    try:
        through = c.url.replace(f"{url.hostname}:{url.port}", f"127.0.0.1:{proxy.port}")
        for node in ("n1", "n2"):
            c.start(node, url=through)
        c.wait_for_links()
        sub = client(c, "n2", "outage-sub")
        sub.subscribe("outage/#", qos=0)
        pub = client(c, "n1", "outage-pub")
        proxy.cut()
        for node in ("n1", "n2"):
            assert c[node].wait_for_log(["a database outage, not a partition"])
        pub.publish("outage/t", b"still flowing", qos=0, wait=False)
        assert sub.message().payload == b"still flowing"
        assert sub.disconnects.empty() and pub.disconnects.empty()
        assert "it is the one cut off" not in c["n1"].log() + c["n2"].log()
        proxy.restore()
        for node in ("n1", "n2"):
            assert c[node].wait_for_log(["cluster lease held again"])
        for x in (sub, pub):
            x.disconnect()
    finally:
        proxy.close()
        c.stop()


def test_a_restarted_node_publishes_the_connection_wills_its_crashed_start_left():
    """A cluster of one node (no survivor to sweep): a clean 3.1.1 client with a will is
    connected when the node is killed (SIGKILL); the node started again with the same id
    publishes the will its earlier start left in connection_wills, and a persistent subscriber
    that comes back gets it once."""
    c = Cluster(size=1, extra_env={"STARLING_CLUSTER_LEASE_TIMEOUT": "2"})
    try:
        watcher = Client.connected(c["n1"], client_id="restart-watcher", protocol=mqtt.MQTTv311, clean=False)
        watcher.subscribe("restart-wills/#", qos=1)
        watcher.disconnect()
        device = device_with_will(c["n1"], "restart-device", "restart-wills/device")
        c["n1"].process.kill()
        c["n1"].process.wait()
        device.client.loop_stop()
        c["n1"].stop()
        c.start("n1")
        watcher = Client.connected(c["n1"], client_id="restart-watcher", protocol=mqtt.MQTTv311, clean=False)
        message = watcher.message(timeout=30)
        assert (message.topic, message.payload) == ("restart-wills/device", b"gone")
        watcher.no_message()
        watcher.disconnect()
    finally:
        c.stop()


def test_a_dead_members_shared_qos1_messages_go_to_another_member():
    """[MQTT-4.8.2-5] A persistent 5.0 member of $share/rg on n2 receives QoS 1 messages and does
    not acknowledge them; a member on n3 gets the others (round_robin between the nodes). n2 is
    killed (SIGKILL): once its lease expires, the survivor that lets its sessions go gives the
    unacknowledged messages to the member on n3, which ends up with all of them."""
    import signal
    import socket
    import time
    c = Cluster(size=3, extra_env={"STARLING_CLUSTER_LEASE_TIMEOUT": "2"})
    try:
        dead = RawClient(c["n2"])
        dead.send(connect("rd-dead", version=5, flags=0x00, properties=props(b"\x11" + (600).to_bytes(4, "big"))))
        assert dead.read_packet()[0] == 0x20
        dead.send(packet(0x82, b"\x00\x01", b"\x00", string("$share/rg/rd/#"), b"\x01"))
        assert dead.read_packet()[0] == 0x90
        alive = client(c, "n3", "rd-alive")
        alive.subscribe("$share/rg/rd/#", qos=1)
        p = client(c, "n1", "rd-pub")
        for i in range(6):
            p.publish(f"rd/{i}", str(i).encode(), qos=1).wait_for_publish(10)
        # The dead member's share: read without acknowledging, until all six are placed.
        unacked, got = [], []
        dead.sock.settimeout(0.1)
        deadline = time.monotonic() + 30
        while len(unacked) + len(got) < 6:
            assert time.monotonic() < deadline, (unacked, got)
            try:
                first, body = dead.read_packet()
                if first & 0xF0 == 0x30:
                    unacked.append(parse_publish(first, body)["payload"])
            except socket.timeout:
                pass
            while not alive.messages.empty():
                got.append(alive.messages.get().payload)
        assert unacked and got  # round_robin gave each node some
        c["n2"].process.send_signal(signal.SIGKILL)
        c["n2"].process.wait()
        while len(got) < 6:
            got.append(alive.message(timeout=30).payload)
        assert sorted(got) == [str(i).encode() for i in range(6)]
        alive.no_message()
        for x in (alive, p):
            x.disconnect()
    finally:
        c.stop()


def test_a_node_cut_off_from_postgresql_is_the_one_that_stops_serving():
    """A partition is not a split brain: n3 reaches PostgreSQL through a proxy the test cuts,
    n1 and n2 directly, and all three reach each other. Cut off, n3 turns unready (its lease is
    not renewed, its store does not answer) while n1 stays ready; n1 and n2 tell n3 over the
    links that they hold their leases, so n3 is the one cut off: it lets its client go by itself
    (DISCONNECT 0x89 Server busy) before anyone claims it. The client resumes on n1 (session
    present): it is never served by two nodes. A clean client's will is published once."""
    import time
    import urllib.parse
    from test_store_outage import Proxy
    c = Cluster(size=2)
    url = urllib.parse.urlsplit(c.url)
    proxy = Proxy(url.hostname, url.port)
    try:
        c.start("n3", url=c.url.replace(f"{url.hostname}:{url.port}", f"127.0.0.1:{proxy.port}"))
        c.wait_for_links()
        expiry = v5_properties(PacketTypes.CONNECT, SessionExpiryInterval=600)
        old = stored_session(c["n3"], "cut-off", expiry)
        old.subscribe("cut/#", qos=1)
        watcher = client(c, "n1", "cut-watcher")
        watcher.subscribe("cut-wills/#", qos=1)
        device = device_with_will(c["n3"], "cut-device", "cut-wills/device")
        proxy.cut()
        deadline = time.monotonic() + 30
        while c["n3"].get("/readyz")[0] != 503:
            assert time.monotonic() < deadline, "the cut-off node stayed ready"
            time.sleep(0.05)
        assert c["n1"].get("/readyz")[0] == 200
        rc, _ = old.disconnects.get(timeout=30)
        assert rc.value == 0x89
        old.client.loop_stop()
        assert c["n3"].wait_for_log(["it is the one cut off"])
        # Its MQTT listeners are closed: a balancer's next attempt is refused at once and goes
        # to another node, rather than being refused 0x88 here until its health check notices.
        assert c["n3"].wait_for_log(["MQTT listeners closed"])
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", c["n3"].port), timeout=5).close()
        new = stored_session(c["n1"], "cut-off", expiry, resumed=True)
        p = client(c, "n2", "cut-pub")
        p.publish("cut/t", b"after the cut", qos=1)
        assert new.message().payload == b"after the cut"
        assert c["n1"].get("/readyz")[0] == 200 and c["n2"].get("/readyz")[0] == 200
        device.client.loop_stop()
        # The clean client's will, whose row stayed for the survivors: published once, by a
        # survivor's sweep or, if n3 holds its lease again first, by n3.
        proxy.restore()
        assert c["n3"].wait_for_log(["cluster lease held again"])
        assert c["n3"].wait_for_log(["MQTT listeners open again"])
        back = client(c, "n3", "cut-back")  # served on the same port again
        back.disconnect()
        message = watcher.message(timeout=30)
        assert (message.topic, message.payload) == ("cut-wills/device", b"gone")
        watcher.no_message()
        for x in (new, p, watcher):
            x.disconnect()
    finally:
        proxy.close()
        c.stop()
