"""The operations endpoints (`--http` / http.listen): /healthz, /readyz and /metrics tell the
truth (docs/architecture.md, G5): ready only when restored, accepting, able to write the store and not
draining; counters follow what clients do."""
import json
import signal
import tempfile
import time

import paho.mqtt.client as mqtt
import pytest

from mqtt_helpers import Client
from raw_client import RawClient, connect, packet, string
from test_store_outage import postgres_behind_proxy

DEADLINE = 60  # seconds for a state the broker must reach (a store ping runs every 5 s)


def metrics(broker):
    """The /metrics exposition as {name: value} (unlabelled samples)."""
    status, text = broker.get("/metrics")
    assert status == 200
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def readiness(broker):
    status, body = broker.get("/readyz")
    report = json.loads(body)
    assert report["status"] == ("ready" if status == 200 else "not ready")
    return status, {check["name"]: check for check in report["checks"]}


def wait_for_readiness(broker, wanted_status, check=None):
    """Asks /readyz until it answers `wanted_status` (and, if named, with `check` failing). An
    event with no notification: the deadline is a failure bound, not a timing assumption."""
    deadline = time.monotonic() + DEADLINE
    while True:
        status, checks = readiness(broker)
        if status == wanted_status and (check is None or not checks[check]["passing"]):
            return checks
        assert time.monotonic() < deadline, f"/readyz stayed {status}: {checks}"
        time.sleep(0.1)


def test_ready_node_reports_every_check_and_counts_traffic(broker_factory, store):
    broker = broker_factory(extra_args=store.args, http=True)

    assert broker.get("/healthz") == (200, "ok\n")
    status, checks = readiness(broker)
    assert status == 200
    assert set(checks) == {"restored", "listeners", "event_loop", "store", "draining"}
    assert all(check["passing"] for check in checks.values())
    assert f"127.0.0.1:{broker.port}" in checks["listeners"]["detail"]

    before = metrics(broker)
    assert before["starling_ready"] == 1
    assert before["starling_clients_connected"] == 0
    sub = Client.connected(broker, client_id="ops-sub", protocol=mqtt.MQTTv5)
    sub.subscribe("ops/#", qos=1)
    pub = Client.connected(broker, client_id="ops-pub")
    for i in range(5):
        pub.publish(f"ops/{i}", b"reading", qos=1)
    for _ in range(5):
        sub.message()

    after = metrics(broker)
    assert after["starling_clients_connected"] == 2
    assert after["starling_subscriptions"] == 1
    assert after["starling_messages_received_total"] - before["starling_messages_received_total"] == 5
    # Five to the subscriber (plus any $SYS traffic, which nobody here subscribes to).
    assert after["starling_messages_sent_total"] - before["starling_messages_sent_total"] == 5
    assert after["starling_store_operations_total"] > before["starling_store_operations_total"]  # the ingest rows
    assert after["starling_store_failing"] == 0
    pub.disconnect()
    sub.disconnect()


def test_unknown_path_is_404(broker_factory):
    broker = broker_factory(extra_args=["--data-dir", tempfile.mkdtemp(prefix="starling-ops-")], http=True)
    status, _ = broker.get("/nothing-here")
    assert status == 404


def test_readiness_says_spooling_while_the_store_is_lost_and_recovers(broker_factory, tmp_path):
    """An idle node whose PostgreSQL goes away finds out from its store ping though no client
    writes anything: it stays ready on its spool, says so (store state "spooling", the spool
    metrics), and goes back to PostgreSQL when it returns."""
    proxy, flags = postgres_behind_proxy("ops")
    try:
        broker = broker_factory(extra_args=(*flags, "--data-dir", str(tmp_path / "d")), http=True,
                                env={"STARLING_MQTT_SYS_INTERVAL": "1"})
        checks = wait_for_readiness(broker, 200)
        assert checks["store"]["state"] == "postgres"

        proxy.cut()
        broker.wait_for_log(("commits go to the local spool",))
        checks = wait_for_readiness(broker, 200)
        assert checks["store"]["state"] == "spooling" and "PostgreSQL cannot be reached" in checks["store"]["detail"]
        values = metrics(broker)
        assert values["starling_ready"] == 1 and values["starling_store_spooling"] == 1 and values["starling_store_outages_total"] == 1
        # $SYS says so too (the retained value first, then each second's).
        watcher = Client.connected(broker, client_id="ops-sys")
        watcher.subscribe("$SYS/broker/store/state")
        while watcher.message().payload != b"spooling":
            pass
        watcher.disconnect()

        proxy.restore()
        broker.wait_for_log(("spool replayed",))
        checks = wait_for_readiness(broker, 200)
        assert checks["store"]["state"] == "postgres"
        assert metrics(broker)["starling_store_spooling"] == 0
    finally:
        proxy.close()


def test_readiness_fails_while_draining_and_http_outlives_the_drain(broker_factory, tmp_path):
    """SIGTERM: /readyz answers 503 "draining" for as long as the broker drains (here held by
    QoS 1 messages that cannot be committed: the store away and the spool full); the broker
    then exits 0."""
    proxy, flags = postgres_behind_proxy("ops")
    try:
        broker = broker_factory(extra_args=(*flags, "--data-dir", str(tmp_path / "d")), http=True,
                                env={"STARLING_STORAGE_SPOOL_MAX_BYTES": "1048576"})
        wait_for_readiness(broker, 200)
        pub = RawClient(broker)
        pub.send(connect("ops-drain", version=4))
        assert pub.read_packet() == (0x20, b"\x00\x00")

        proxy.cut()
        broker.wait_for_log(("commits go to the local spool",))
        for i in range(1, 8):
            pub.send(packet(0x32, string("ops/held"), i.to_bytes(2, "big"), b"h" * 300_000))
        broker.wait_for_log(("storage.spool_max_bytes is 1048576",))
        broker.process.send_signal(signal.SIGTERM)

        checks = wait_for_readiness(broker, 503, check="draining")  # the store check may fail first
        assert "shutting down" in checks["draining"]["detail"]
        assert broker.process.poll() is None  # still draining: the held message waits

        proxy.restore()
        assert broker.process.wait(DEADLINE) == 0
    finally:
        proxy.close()
