"""The ingest bridge (G2, docs/architecture.md "The ingest bridge"): every published message becomes one row of
`messages`; re-sends after a lost PUBACK or a crash never add a second row; legitimate repeats
do. Runs on SQLite and PostgreSQL against the built binary."""
import random
import signal
import tempfile
import threading

import paho.mqtt.client as mqtt
import pytest

from mqtt_helpers import TIMEOUT, Client
from raw_client import RawClient, connect, packet, string
from stores import Store, store_params


@pytest.fixture(params=store_params())
def store(request):
    data = tempfile.TemporaryDirectory(prefix="starling-ingest-")
    yield Store(request.param, data.name)
    data.cleanup()


def publish_qos1(pid, payload, dup=False, topic="ingest/t"):
    return packet(0x3A if dup else 0x32, string(topic), pid.to_bytes(2, "big"), payload)


def publish_acked(c, pid, payload, dup=False, topic="ingest/t"):
    """Sends a QoS 1 PUBLISH and asserts its PUBACK (which the broker sends after the commit)."""
    c.send(publish_qos1(pid, payload, dup=dup, topic=topic))
    assert c.read_packet() == (0x40, pid.to_bytes(2, "big"))


def raw_session(broker, client_id="ingest-pub"):
    c = RawClient(broker)
    c.send(connect(client_id, version=4, flags=0x00))  # clean session 0: a session to resume
    first, body = c.read_packet()
    assert first == 0x20 and body[1] == 0
    return c


def raw_clean_session(broker, client_id):
    c = RawClient(broker)
    c.send(connect(client_id, version=4, flags=0x02))  # clean session 1
    assert c.read_packet() == (0x20, b"\x00\x00")
    return c


def rows(store, payload=None, topic="ingest/t"):
    where = f"topic = '{topic}'"
    if payload is not None:
        where += f" AND payload = {hex_literal(store, payload)}"
    return store.scalar(f"SELECT count(*) FROM messages WHERE {where}")


def hex_literal(store, payload):
    return f"X'{payload.hex()}'" if store.kind == "sqlite" else f"'\\x{payload.hex()}'::bytea"


def test_g2_crash_before_ack_then_dup_resend_is_one_row(store, broker_factory):
    """[G2][MQTT-3.3.1-1] A QoS 1 PUBLISH is committed, the broker is killed with SIGKILL before
    the client takes the PUBACK into account; the client reconnects and re-sends with DUP=1:
    one row."""
    broker = broker_factory(extra_args=store.args)
    c = raw_session(broker)
    publish_acked(c, 7, b"reading-1")  # committed (the client acts as if it never read this)
    broker.process.send_signal(signal.SIGKILL)
    broker.process.wait()
    c.close()
    broker = broker_factory(extra_args=store.args)
    c = raw_session(broker)
    publish_acked(c, 7, b"reading-1", dup=True)
    assert rows(store, b"reading-1") == 1


@pytest.mark.parametrize("sends, expected", [
    # The client re-sends with DUP=1 after a PUBACK it never read: one row.
    ([(9, b"reading", False), (9, b"reading", True)], 1),
    # The same packet id and payload with DUP=0 after the PUBACK is a new reading: two rows.
    ([(3, b"21.5", False), (3, b"21.5", False)], 2),
    # Same packet id, DUP=1, different content: a new row.
    ([(4, b"first", False), (4, b"second", True)], 2),
], ids=["lost-puback-dup-resend", "legitimate-repeat-dup-0", "dup-1-different-content"])
def test_g2_what_a_resend_is(store, broker_factory, sends, expected):
    """[G2] Whether a PUBLISH with a packet id already used is the same reading (no second row)."""
    broker = broker_factory(extra_args=store.args)
    c = raw_session(broker)
    for packet_id, payload, dup in sends:
        publish_acked(c, packet_id, payload, dup=dup)
    assert rows(store) == expected


def test_g2_content_mode_drops_identical_repeats_without_dup(store, broker_factory):
    """[G2] With ingest.dedup = "content", an identical repeat of a packet id is a re-send even
    with DUP=0 (the documented trade-off)."""
    broker = broker_factory(extra_args=store.args, env={"STARLING_INGEST_DEDUP": "content"})
    c = raw_session(broker)
    for _ in range(2):
        publish_acked(c, 5, b"same")
    assert rows(store, b"same") == 1


def test_g2_qos2_interrupted_after_pubrec_is_one_row_and_one_delivery(store, broker_factory):
    """[G2][MQTT-4.3.3-10] QoS 2 interrupted after PUBREC and resumed after a restart: one row,
    and one delivery to a subscriber."""
    broker = broker_factory(extra_args=store.args)
    sub = Client.connected(broker, client_id="ingest-sub", clean=False)
    sub.subscribe("ingest/#", qos=2)
    sub.disconnect()
    c = raw_session(broker)
    c.send(packet(0x34, string("ingest/t"), b"\x00\x0b", b"once"))
    assert c.read_packet() == (0x50, b"\x00\x0b")
    broker.process.send_signal(signal.SIGKILL)
    broker.process.wait()
    c.close()
    broker = broker_factory(extra_args=store.args)
    c = RawClient(broker)
    c.send(connect("ingest-pub", version=4, flags=0x00))
    assert c.read_packet() == (0x20, b"\x01\x00")
    c.send(packet(0x3C, string("ingest/t"), b"\x00\x0b", b"once"))  # DUP re-send
    assert c.read_packet() == (0x50, b"\x00\x0b")
    c.send(packet(0x62, b"\x00\x0b"))
    assert c.read_packet() == (0x70, b"\x00\x0b")
    assert rows(store, b"once") == 1
    sub = Client.connected(broker, client_id="ingest-sub", clean=False)
    assert sub.message().payload == b"once"
    sub.no_message()


def test_g2_two_copies_of_one_key_in_one_read_are_one_row_and_others_kept(store, broker_factory):
    """[G2] Two copies of one key arriving together (one TCP write, so one read and, normally,
    one group commit): one row, and the other messages of that batch are all stored."""
    broker = broker_factory(extra_args=store.args)
    c = raw_session(broker)
    burst = publish_qos1(1, b"k") + publish_qos1(1, b"k", dup=True)
    burst += b"".join(publish_qos1(100 + i, f"other-{i}".encode()) for i in range(50))
    c.send(burst)
    acks = [c.read_packet() for _ in range(52)]
    assert acks[0] == (0x40, b"\x00\x01") and acks[1] == (0x40, b"\x00\x01")
    assert rows(store, b"k") == 1
    assert rows(store) == 51


def test_g2_stream_through_sigkill_restarts_every_acked_message_exactly_once(store, broker_factory):
    """[G1][G2] A client streaming 1,000 QoS 1 messages with unique payloads through several
    SIGKILL restarts (paho re-sends unacknowledged ones with DUP=1 after each reconnect): every
    acknowledged message has exactly one row."""
    rng = random.Random(6)
    broker = broker_factory(extra_args=store.args)
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="stream",
                         clean_session=False, protocol=mqtt.MQTTv311)
    client._reconnect_on_failure = False
    client.max_inflight_messages_set(20)
    acked_mids = set()
    progress = threading.Condition()  # never held while calling into paho (its locks call back into ours)
    connected = threading.Event()

    def on_publish(c, u, mid, rc, props):
        with progress:
            acked_mids.add(mid)
            progress.notify_all()

    client.on_publish = on_publish
    client.on_connect = lambda *a: connected.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert connected.wait(TIMEOUT)
    total = 1000
    infos = [client.publish("ingest/stream", f"s-{i:04d}".encode(), qos=1) for i in range(total)]

    def wait_for(count):
        with progress:
            assert progress.wait_for(lambda: len(acked_mids) >= count, timeout=120), f"{len(acked_mids)} of {count} acknowledged"

    for stop in sorted(rng.sample(range(100, 900), 3)):
        wait_for(stop)
        broker.process.send_signal(signal.SIGKILL)
        broker.process.wait()
        broker = broker_factory(extra_args=store.args)
        connected.clear()
        client.loop_stop()
        client.connect(broker.host, broker.port)  # same session: unacknowledged messages go again with DUP=1
        client.loop_start()
        assert connected.wait(TIMEOUT)
    wait_for(total)
    client.loop_stop()
    assert all(info.is_published() for info in infos)
    counts = store.query("SELECT payload, count(*) FROM messages WHERE topic = 'ingest/stream' GROUP BY payload")
    assert len(counts) == total
    assert all(int(n) == 1 for _, n in counts)


@pytest.mark.parametrize("restart", [False, True], ids=["same-broker", "after-sigkill"])
def test_g2_clean_start_frees_qos2_packet_ids_of_an_unstored_session(store, broker_factory, restart):
    """[G2][MQTT-4.3.3-11] A clean-session publisher leaves a QoS 2 flow after PUBREC (its
    `inbound_qos2` entry is in the store with the row). Its next clean start begins a new
    session: the same packet id carries a new message, which is a new row — also when the
    broker was killed in between and learned of the entry from the store."""
    broker = broker_factory(extra_args=store.args)
    c = raw_clean_session(broker, "ingest-clean")
    c.send(packet(0x34, string("ingest/t"), b"\x00\x05", b"first"))
    assert c.read_packet() == (0x50, b"\x00\x05")
    c.close()
    if restart:
        broker.process.send_signal(signal.SIGKILL)
        broker.process.wait()
        broker = broker_factory(extra_args=store.args)
    c = raw_clean_session(broker, "ingest-clean")
    c.send(packet(0x34, string("ingest/t"), b"\x00\x05", b"second"))
    assert c.read_packet() == (0x50, b"\x00\x05")
    c.send(packet(0x62, b"\x00\x05"))
    assert c.read_packet() == (0x70, b"\x00\x05")
    assert rows(store, b"first") == 1
    assert rows(store, b"second") == 1


def test_g2_qos0_flood_pauses_the_publisher_and_stores_every_message(store, broker_factory):
    """[G2] QoS 0 messages arriving faster than the store writes their rows: past
    `storage.max_pending_writes` the broker stops reading from the publisher (TCP holds its
    messages) until the store catches up, so memory stays bounded; no message is lost."""
    broker = broker_factory(config_text="[storage]\nmax_pending_writes = 100\n", extra_args=store.args)
    c = raw_clean_session(broker, "ingest-flood")
    count = 5000
    c.send(b"".join(packet(0x30, string("ingest/flood"), f"m{i}".encode()) for i in range(count)))
    broker.wait_for_log(["reading from publishing clients pauses"])
    broker.wait_for_log(["reading from publishing clients resumes"])
    # A QoS 1 message is acknowledged once everything before it is committed.
    publish_acked(c, 1, b"last", topic="ingest/flood")
    assert rows(store, topic="ingest/flood") == count + 1
