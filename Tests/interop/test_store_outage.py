"""PostgreSQL lost at run time, behind a TCP proxy that the test cuts (the spool that keeps a
node going is tested in test_spool.py): a full spool stops acknowledgements and loses nothing;
a node that starts while PostgreSQL is unreachable starts on its spool, naming the store."""
import os
import select
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import BINARY
from mqtt_helpers import TIMEOUT, Client
from raw_client import RawClient, connect, packet, string
from netproxy import Proxy  # noqa: F401 (test_spool and test_cluster import it from here)
from stores import POSTGRES_URL


def postgres_behind_proxy(schema_prefix):
    """The test PostgreSQL behind a `Proxy` the test can cut: (proxy, the broker's --postgres
    flags with a schema of its own). Skips without PostgreSQL, fails under CI."""
    if not POSTGRES_URL:
        if os.environ.get("CI"):
            pytest.fail("CI is set but STARLING_TEST_POSTGRES_URL is not")
        pytest.skip("no PostgreSQL configured (run under scripts/with-postgres)")
    url = urllib.parse.urlsplit(POSTGRES_URL)
    proxy = Proxy(url.hostname, url.port)
    proxied = POSTGRES_URL.replace(f"{url.hostname}:{url.port}", f"127.0.0.1:{proxy.port}")
    return proxy, ["--postgres", f"{proxied}?schema={schema_prefix}_{proxy.port}"]


def test_a_full_spool_stops_acknowledging_and_loses_nothing(broker_factory, tmp_path):
    """storage.spool_max_bytes reached during an outage: acknowledgements stop, reading from
    the publisher pauses, readiness fails; once PostgreSQL is back the replay makes room and
    every message is acknowledged and stored once."""
    proxy, flags = postgres_behind_proxy("spoolfull")
    schema = urllib.parse.parse_qs(urllib.parse.urlsplit(flags[1]).query)["schema"][0]
    try:
        broker = broker_factory(extra_args=(*flags, "--data-dir", str(tmp_path / "data")), http=True,
                                env={"STARLING_STORAGE_SPOOL_MAX_BYTES": "1048576", "STARLING_INGEST_ENABLED": "true"})
        pub = RawClient(broker)
        pub.send(connect("spool-full", version=4))
        assert pub.read_packet() == (0x20, b"\x00\x00")
        proxy.cut()
        broker.wait_for_log(("commits go to the local spool",))
        payload = b"x" * 200_000
        count = 12  # 2.4 MB of readings for a 1 MiB spool
        for i in range(1, count + 1):
            pub.send(packet(0x32, string("full/t"), i.to_bytes(2, "big"), str(i).encode() + payload))
        broker.wait_for_log(("storage.spool_max_bytes is 1048576",))
        status, body = broker.get("/readyz")
        assert status == 503 and "spool" in body, body
        acknowledged = []
        while select.select([pub.sock], [], [], 0)[0] or pub.buffer:
            acknowledged.append(pub.read_packet())
        assert len(acknowledged) < count  # the rest wait, unacknowledged
        proxy.restore()
        while len(acknowledged) < count:
            acknowledged.append(pub.read_packet())
        assert acknowledged == [(0x40, i.to_bytes(2, "big")) for i in range(1, count + 1)]
        broker.wait_for_log(("spool replayed",))
        rows = subprocess.run(["psql", POSTGRES_URL, "-X", "-q", "-A", "-t", "-c", f"SET search_path TO {schema}",
                               "-c", "SELECT count(*), count(DISTINCT packet_id) FROM messages"],
                              check=True, capture_output=True, text=True, timeout=60).stdout.split()
        assert rows[-1] == f"{count}|{count}"
    finally:
        proxy.close()


def test_store_unreachable_at_start_starts_on_the_spool_naming_the_store(broker_factory, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    broker = broker_factory(extra_args=("--postgres", f"postgres://u:secret@127.0.0.1:{port}/db", "--data-dir", str(tmp_path / "d")),
                            http=True)
    log = broker.wait_for_log(("STARTING ON THE SPOOL",))
    assert f"127.0.0.1:{port}" in log
    assert "secret" not in log
    client = Client.connected(broker, client_id="on-the-spool")
    client.publish("spool/start", b"kept", qos=1)  # acknowledged: committed to the spool
    status, body = broker.get("/readyz")
    assert status == 200 and '"spooling"' in body, body
