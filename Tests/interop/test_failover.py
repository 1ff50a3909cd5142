"""The seed scenario end to end (issue 14): devices publish through a real HAProxy, configured
from deploy/haproxy.cfg, to three nodes on one PostgreSQL; nodes die (SIGKILL, several times,
different nodes, each restarted) and one is drained (SIGTERM) while the devices stream. paho-mqtt
devices (3.1.1 and 5.0, QoS 1 and QoS 2, TCP and WebSocket) reconnect by themselves and re-send
what was not acknowledged with DUP. Then SQL over `messages`: every acknowledged reading exactly
once; the persistent subscriber got every QoS 1 reading at least once and every QoS 2 reading
exactly once; the retained message set before the first kill is still served."""
import paho.mqtt.client as mqtt
import pytest

from cluster import Cluster
from failover import Balancer, Consumer, Device
from mqtt_helpers import Client

KILLS = 3  # SIGKILLs, each of the node serving the most devices at that moment


class Through:
    """What `Client` needs of a broker, pointing at the balancer."""

    def __init__(self, balancer):
        self.host = balancer.host
        self.ports = {"mqtt": balancer.port}


@pytest.fixture
def seed():
    cluster = Cluster(size=3, schemes=("mqtt", "ws"), extra_env={
        "STARLING_MQTT_PROXY_PROTOCOL": "true",  # deploy/haproxy.cfg sends PROXY v2
        "STARLING_MQTT_WS_LISTENERS": "127.0.0.1:0",
        "STARLING_SERVER_DRAIN_WAIT": "1.5",  # HAProxy marks a node down after 2 checks 500 ms apart
    })
    balancer = Balancer(cluster)
    try:
        balancer.wait_for({n: "UP" for n in cluster.nodes})
        balancer.wait_for({n: "UP" for n in cluster.nodes}, backend="starling_ws")
        yield cluster, balancer
    finally:
        balancer.stop()
        cluster.stop()


def devices_by_node(cluster, ids):
    """{node_id: [client ids of `ids` connected there]}."""
    placed = {}
    for node_id, node in cluster.nodes.items():
        if node.process.poll() is None:
            clients = cluster.api(node_id, "/api/v1/clients")["clients"]
            placed[node_id] = [c["client_id"] for c in clients if c["connected"] and c["client_id"] in ids]
    return placed


def restart(cluster, balancer, node_id):
    """The node comes back with the same id (it waits out its dead lease) on new ports."""
    cluster[node_id].stop()
    cluster.start(node_id)
    balancer.repoint(node_id)
    balancer.wait_for({node_id: "UP"})
    cluster.wait_for_links()


def test_devices_survive_node_deaths_and_a_drain_with_every_reading_stored_once(seed):
    cluster, balancer = seed
    retained = Client.connected(Through(balancer), client_id="installer")
    retained.client.publish("config/site", b"site-7", qos=1, retain=True).wait_for_publish(30)
    retained.disconnect()

    consumer = Consumer(balancer.host, balancer.port, "dashboard")
    devices = [Device(balancer.host, balancer.port, "meter-311-q1", mqtt.MQTTv311, qos=1),
               Device(balancer.host, balancer.port, "meter-311-q2", mqtt.MQTTv311, qos=2),
               Device(balancer.host, balancer.port, "meter-5-q1", mqtt.MQTTv5, qos=1),
               Device(balancer.host, balancer.port, "meter-5-q2", mqtt.MQTTv5, qos=2),
               Device(balancer.host, balancer.ws_port, "meter-ws-q1", mqtt.MQTTv5, qos=1, transport="websockets"),
               Device(balancer.host, balancer.port, "meter-311-q1b", mqtt.MQTTv311, qos=1)]
    ids = {d.client_id for d in devices}
    try:
        for d in devices:
            d.start()
        for d in devices:
            d.progressed()

        for _ in range(KILLS):
            placed = devices_by_node(cluster, ids)
            victim = max(placed, key=lambda n: len(placed[n]))
            moved = [d for d in devices if d.client_id in placed[victim]]
            assert moved, f"no device on any node: {placed}"
            before = {d.client_id: len(d.disconnect_times) for d in moved}
            cluster[victim].process.kill()
            cluster[victim].process.wait()
            for d in devices:  # every device is served again, those of the dead node elsewhere
                d.progressed()
            assert all(len(d.disconnect_times) > before[d.client_id] for d in moved)
            assert not any(d.client_id in devices_by_node(cluster, ids).get(victim, []) for d in moved)
            restart(cluster, balancer, victim)

        # A drain while the devices stream: 503 first, then 0x8B; the devices carry on elsewhere.
        placed = devices_by_node(cluster, ids)
        drained = max(placed, key=lambda n: len(placed[n]))
        assert cluster[drained].terminate() == 0, cluster[drained].log()[-2000:]
        assert "ERROR" not in cluster[drained].log(), cluster[drained].log()[-2000:]  # a clean stop
        for d in devices:
            d.progressed()
        restart(cluster, balancer, drained)
        for d in devices:
            d.progressed()

        for d in devices:
            d.finish()
    finally:
        for d in devices:
            d.stop()

    acked = {d.qos: [] for d in devices}
    for d in devices:
        acked[d.qos] += d.acked()
    every = acked[1] + acked[2]
    assert len(every) > 100

    # The database: every acknowledged reading exactly once (G2), rows of no other reading.
    rows = cluster.query("SELECT convert_from(payload, 'UTF8'), count(*) FROM messages "
                         "WHERE topic LIKE 'readings/%' GROUP BY 1")
    stored = {payload: int(count) for payload, count in rows}
    assert [p for p in every if p not in stored] == [], "acknowledged readings missing from messages"
    assert {p: n for p, n in stored.items() if n > 1} == {}, "readings stored twice"
    assert set(stored) == set(every)

    # The subscriber: QoS 1 at least once, QoS 2 exactly once (G1, G3).
    try:
        assert consumer.wait_for(every) == [], "acknowledged readings the subscriber never got"
        with consumer.lock:
            assert {p: consumer.counts[p] for p in acked[2] if consumer.counts[p] != 1} == {}
    finally:
        consumer.stop()

    # The retained message set before the first kill is still served.
    late = Client.connected(Through(balancer), client_id="late-reader")
    late.subscribe("config/#", qos=1)
    message = late.message()
    assert (message.topic, message.payload, message.retain) == ("config/site", b"site-7", True)
    late.disconnect()
