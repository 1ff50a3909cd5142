"""The SQLite fallback (README "SQLite fallback"): PostgreSQL behind a TCP proxy the test cuts.
While it is cut, nodes keep acknowledging QoS 1 and QoS 2 readings (committed to the spool in
their data directories), stay ready and say "spooling"; a node killed during the outage starts
again on its spool; when PostgreSQL is back the spools are replayed, and every acknowledged
reading is in `messages` exactly once, also one a device re-sent with DUP through another node.
"""
import json
import os
import subprocess
import urllib.parse

import paho.mqtt.client as mqtt

from cluster import Cluster
from conftest import Broker
from mqtt_helpers import Client
from raw_client import RawClient, connect, packet, string
from stores import POSTGRES_URL
from test_store_outage import Proxy, postgres_behind_proxy


def query(schema, sql):
    out = subprocess.run(["psql", POSTGRES_URL, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                          "-c", f"SET search_path TO {schema}", "-c", sql],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines() if line and line != "SET"]


def stored_counts(schema, prefix):
    """{payload: number of rows} of the readings whose payload starts with `prefix`."""
    rows = query(schema, f"SELECT convert_from(payload, 'UTF8'), count(*) FROM messages "
                         f"WHERE convert_from(payload, 'UTF8') LIKE '{prefix}%' GROUP BY 1")
    return {payload: int(n) for payload, n in rows}


def stream(node, tag, count, acknowledged):
    """Publishes `count` readings per protocol (3.1.1, 5.0) and QoS (1, 2) through paho, each
    acknowledged (PUBACK / PUBCOMP) before the next; records what was acknowledged."""
    for protocol, name in ((mqtt.MQTTv311, "311"), (mqtt.MQTTv5, "5")):
        for qos in (1, 2):
            device = Client.connected(node, client_id=f"spool-{tag}-{name}-{qos}", protocol=protocol)
            for i in range(count):
                payload = f"reading-{tag}-{name}-{qos}-{i}"
                device.publish(f"spool/{qos}", payload, qos=qos)  # returns once acknowledged
                acknowledged.append(payload)
            device.disconnect()


def store_check(node):
    status, body = node.get("/readyz")
    check = next(c for c in json.loads(body)["checks"] if c["name"] == "store")
    return status, check


def test_a_node_acknowledges_through_an_outage_and_a_kill_then_replays_every_reading_once(tmp_path):
    proxy, flags = postgres_behind_proxy("spool")
    schema = urllib.parse.parse_qs(urllib.parse.urlsplit(flags[1]).query)["schema"][0]
    args = (*flags, "--data-dir", str(tmp_path / "data"))
    nodes = []
    try:
        node = Broker(extra_args=args, http=True)
        nodes.append(node)
        watcher = Client.connected(node, client_id="spool-watcher")
        watcher.subscribe("spool/#", qos=1)
        acknowledged = []
        stream(node, "before", 3, acknowledged)
        assert store_check(node)[1]["state"] == "postgres"

        proxy.cut()
        during = []
        stream(node, "cut", 5, during)  # every one acknowledged while PostgreSQL is cut
        acknowledged += during
        node.wait_for_log(("commits go to the local spool",))
        status, check = store_check(node)
        assert status == 200 and check["state"] == "spooling" and check["passing"], check
        # Delivery goes on: the watcher gets the readings published during the cut.
        seen = set()
        while not set(during) <= seen:
            seen.add(watcher.message().payload.decode())
        _, metrics = node.get("/metrics")
        assert "starling_store_spooling 1" in metrics

        # Killed during the outage, the node starts again on its spool.
        node.process.kill()
        node.process.wait()
        node = Broker(extra_args=args, http=True)
        nodes.append(node)
        node.wait_for_log(("STARTING ON THE SPOOL",))
        stream(node, "restarted", 5, acknowledged)
        # A stored session it could not load is refused with Server Unavailable, not started empty.
        device = RawClient(node)
        device.send(connect("spool-persistent", version=4, flags=0x00))
        assert device.read_packet() == (0x20, b"\x00\x03")
        device.close()
        assert store_check(node)[1]["state"] == "spooling"

        # Killed again in the middle of the replay (a test hook stops it after two of its
        # transactions), it resumes after the last one PostgreSQL recorded.
        node.process.kill()
        node.process.wait()
        node = Broker(extra_args=args, http=True, env={"STARLING_TEST_REPLAY_PAUSE": "2"})
        nodes.append(node)
        node.wait_for_log(("STARTING ON THE SPOOL",))
        proxy.restore()
        node.wait_for_log(("replay paused after 2 transactions",))
        node.process.kill()
        node.process.wait()
        partial = stored_counts(schema, "reading-")
        assert set(partial) < set(acknowledged) and set(partial.values()) == {1}
        node = Broker(extra_args=args, http=True)
        nodes.append(node)
        assert "from an earlier run" in node.log()  # replayed before it listened
        assert stored_counts(schema, "reading-") == {payload: 1 for payload in acknowledged}
        assert store_check(node)[1]["state"] == "postgres"
        # Its earlier start's spool was replayed first: stored sessions are served again.
        device = RawClient(node)
        device.send(connect("spool-persistent", version=4, flags=0x00))
        assert device.read_packet() == (0x20, b"\x00\x00")
        device.close()
    finally:
        for node in nodes:
            node.stop()
        proxy.close()


def test_two_nodes_serve_through_an_outage_and_a_reading_resent_through_the_other_node_is_one_row(tmp_path):
    cluster = Cluster(size=0)
    url = urllib.parse.urlsplit(POSTGRES_URL)
    proxy = Proxy(url.hostname, url.port)
    proxied = cluster.url.replace(f"{url.hostname}:{url.port}", f"127.0.0.1:{proxy.port}")
    data = {n: ("--data-dir", str(tmp_path / n)) for n in ("n1", "n2")}
    try:
        for n in ("n1", "n2"):
            cluster.start(n, extra_args=data[n], url=proxied)
        cluster.wait_for_links()
        watcher = Client.connected(cluster["n2"], client_id="moved-watcher")
        watcher.subscribe("moved/#", qos=1)
        device = RawClient(cluster["n1"])
        device.send(connect("mover", version=4))
        assert device.read_packet() == (0x20, b"\x00\x00")

        proxy.cut()
        for n in ("n1", "n2"):
            cluster[n].wait_for_log(("commits go to the local spool",))
        # Both stay ready once their leases lapse: no peer reaches PostgreSQL, so this is an
        # outage, not a partition.
        for n in ("n1", "n2"):
            cluster[n].wait_for_log(("a database outage, not a partition",))
            status, body = cluster[n].get("/readyz")
            assert status == 200, body
            assert "database outage" in body

        # The reading is acknowledged by n1 (spooled there); the device never sees the PUBACK,
        # moves to n2 and re-sends it with DUP: n2 spools its copy too.
        device.send(packet(0x32, string("moved/t"), b"\x00\x07", b"moved-reading"))
        assert device.read_packet() == (0x40, b"\x00\x07")
        assert watcher.message().payload == b"moved-reading"  # delivered across nodes meanwhile
        device.close()
        device = RawClient(cluster["n2"])
        device.send(connect("mover", version=4))
        assert device.read_packet() == (0x20, b"\x00\x00")  # a clean session needs no claim
        device.send(packet(0x3A, string("moved/t"), b"\x00\x07", b"moved-reading"))
        assert device.read_packet() == (0x40, b"\x00\x07")
        # A session that needs a claim in the store is refused until it is back.
        persistent = RawClient(cluster["n2"])
        persistent.send(connect("moved-persistent", version=5, flags=0x00))
        assert persistent.read_packet()[1][:2] == b"\x00\x88"
        persistent.close()
        device.close()

        # n1 dies with the original in its spool; n2 replays its DUP copy first, then n1,
        # restarted, replays the original (received earlier): one row.
        cluster["n1"].process.kill()
        cluster["n1"].process.wait()
        proxy.restore()
        cluster["n2"].wait_for_log(("spool replayed",))
        assert stored_counts(cluster.schema, "moved-") == {"moved-reading": 1}
        cluster.nodes["n1"].stop()
        restarted = cluster.start("n1", extra_args=data["n1"], url=proxied)
        restarted.wait_for_log(("from an earlier run",))
        assert stored_counts(cluster.schema, "moved-") == {"moved-reading": 1}
        # n2 was never taken for dead: its watcher is still served (the DUP re-send was a
        # second delivery to it, at least once being QoS 1's promise).
        watcher.publish("moved/after", b"still-here", qos=1)
        while (message := watcher.message()).topic != "moved/after":
            assert message.payload == b"moved-reading"
        assert message.payload == b"still-here"
    finally:
        cluster.stop()
        proxy.close()
