"""Behind a real HAProxy: the PROXY protocol v2 gives the broker the client's own address, and
HAProxy's health check against /readyz keeps a node in rotation while it serves on its spool,
its store away (docs/architecture.md, G5; README "SQLite fallback")."""
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from mqtt_helpers import TIMEOUT, Client
from raw_client import connect
from stores import POSTGRES_URL
from test_store_outage import postgres_behind_proxy

DEADLINE = 60  # seconds for a state HAProxy must reach (it checks every 200 ms)
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HAProxy:
    """An haproxy process in front of one broker: TCP on a free port, PROXY v2 to the broker
    (unless `send_proxy` is False), an HTTP check of /readyz on its operations port; stopped by
    `stop()`."""

    def __init__(self, broker, send_proxy=True):
        if not os.path.exists(HAPROXY):
            pytest.fail("haproxy is not installed (scripts/install-test-deps installs it)")
        self.dir = tempfile.TemporaryDirectory(prefix="starling-haproxy-")
        self.port = free_port()
        self.socket_path = pathlib.Path(self.dir.name) / "admin.sock"
        config = pathlib.Path(self.dir.name) / "haproxy.cfg"
        proxy = "send-proxy-v2 " if send_proxy else ""
        config.write_text(f"""
global
    stats socket {self.socket_path} mode 600 level admin

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend mqtt
    bind 127.0.0.1:{self.port}
    default_backend nodes

backend nodes
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 200ms fall 1 rise 1
    server node1 127.0.0.1:{broker.port} {proxy}check port {broker.http_port}
""")
        self.log = open(pathlib.Path(self.dir.name) / "haproxy.log", "w")
        self.process = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdout=self.log, stderr=subprocess.STDOUT)
        self.host = "127.0.0.1"

    def server_state(self):
        """node1's operational state as HAProxy's runtime API reports it ("UP", "DOWN", …)."""
        row = self.server_stats()
        return row["status"] if row else None

    def server_stats(self):
        """node1's row of HAProxy's statistics (status, chkfail, chkdown, …)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(TIMEOUT)
            s.connect(str(self.socket_path))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(",")))
            if row.get("svname") == "node1":
                return row
        return None

    def wait_for_state(self, wanted):
        deadline = time.monotonic() + DEADLINE
        state = None
        while time.monotonic() < deadline:
            assert self.process.poll() is None, pathlib.Path(self.log.name).read_text()
            try:
                state = self.server_state()
            except OSError:
                state = None  # the runtime socket is not there yet
            if state is not None and state.split()[0] == wanted:
                return
            time.sleep(0.1)  # polling HAProxy's state, which has no notification
        raise AssertionError(f"HAProxy kept node1 {state}, wanted {wanted}")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(TIMEOUT)
        self.log.close()
        self.dir.cleanup()


@pytest.fixture
def haproxy_factory():
    started = []

    def start(broker, **options):
        h = HAProxy(broker, **options)
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()


class Through:
    """What `Client` needs of a broker, pointing at HAProxy's port."""

    def __init__(self, haproxy):
        self.host = "127.0.0.1"
        self.ports = {"mqtt": haproxy.port}


def test_client_address_reaches_the_broker_through_proxy_protocol_v2(broker_factory, haproxy_factory):
    broker = broker_factory(config_text="[mqtt]\nproxy_protocol = true\n", extra_args=["--log-level", "debug",
                            "--data-dir", tempfile.mkdtemp(prefix="starling-haproxy-")], http=True)
    haproxy = haproxy_factory(broker)
    haproxy.wait_for_state("UP")

    sub = Client.connected(Through(haproxy), client_id="behind-haproxy")
    client_port = sub.client.socket().getsockname()[1]
    sub.subscribe("lb/#", qos=1)
    sub.client.publish("lb/x", b"through the balancer", qos=1)
    assert sub.message().payload == b"through the balancer"

    log = broker.wait_for_log(("client connected",))
    line = next(l for l in log.splitlines() if "client connected" in l and "behind-haproxy" in l)
    # The client's own port (HAProxy's connection to the broker has another one).
    assert f"127.0.0.1:{client_port}" in line, line
    sub.disconnect()


def test_a_connection_without_the_header_is_closed_when_proxy_protocol_is_on(broker_factory):
    broker = broker_factory(config_text="[mqtt]\nproxy_protocol = true\n")
    with socket.create_connection(("127.0.0.1", broker.port), timeout=TIMEOUT) as s:
        s.sendall(connect("no-header", version=4))
        assert s.recv(64) == b""  # closed, no CONNACK
    broker.wait_for_log(("did not start with a PROXY protocol header",))


def test_haproxy_keeps_a_node_that_spools_in_service(broker_factory, haproxy_factory, tmp_path):
    """PostgreSQL cut away: the node serves on its spool, so /readyz stays 200 and HAProxy never
    fails a check; a device's readings are acknowledged through HAProxy during the cut and
    stored once after it (before the spool, no reading was acknowledged for the whole outage)."""
    proxy, flags = postgres_behind_proxy("lb")
    schema = flags[1].rsplit("schema=", 1)[1]
    try:
        broker = broker_factory(config_text="[mqtt]\nproxy_protocol = true\n", extra_args=(*flags, "--data-dir", str(tmp_path / "d")),
                                http=True)
        haproxy = haproxy_factory(broker)
        haproxy.wait_for_state("UP")
        device = Client.connected(Through(haproxy), client_id="lb-device")

        proxy.cut()
        device.publish("lb/t", b"lb-during-1", qos=1)  # returns once acknowledged
        broker.wait_for_log(("commits go to the local spool",))
        device.publish("lb/t", b"lb-during-2", qos=1)
        proxy.restore()
        broker.wait_for_log(("spool replayed",))
        stats = haproxy.server_stats()
        assert stats["status"].startswith("UP") and stats["chkfail"] == "0" and stats["chkdown"] == "0", stats
        rows = subprocess.run(["psql", POSTGRES_URL, "-X", "-q", "-A", "-t", "-c", f"SET search_path TO {schema}",
                               "-c", "SELECT convert_from(payload, 'UTF8') FROM messages ORDER BY id"],
                              check=True, capture_output=True, text=True, timeout=60).stdout.split()
        assert rows == ["lb-during-1", "lb-during-2"]
        device.disconnect()
    finally:
        proxy.close()
