"""A cluster of `starling` nodes on one private PostgreSQL schema, for the end-to-end cluster
tests: each node is a process with its own data directory, MQTT, HTTP and cluster ports chosen
by the kernel, the same cluster secret, and the admin API on. Every process is stopped by the
fixture that started it."""
import json
import os
import time
import uuid

import pytest

from conftest import Broker
from stores import POSTGRES_URL

SECRET = "test-cluster-secret-0123456789"
ADMIN_TOKEN = "test-admin-token-0123456789"
READY_TIMEOUT = 60  # seconds for links to come up; only bounds a broken run


def query(schema, sql):
    """Rows of `sql` run by psql in `schema` of the test PostgreSQL, as lists of strings."""
    import subprocess
    out = subprocess.run(["psql", POSTGRES_URL, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                          "-c", f"SET search_path TO {schema}", "-c", sql],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    return [line.split("\t") for line in out.splitlines() if line and line != "SET"]


def postgres_url(schema):
    if not POSTGRES_URL:
        if os.environ.get("CI"):
            pytest.fail("CI is set but STARLING_TEST_POSTGRES_URL is not: the cluster tests would be skipped")
        pytest.skip("no PostgreSQL configured (run under scripts/with-postgres)")
    return f"{POSTGRES_URL}?schema={schema}"


class Cluster:
    """Nodes n1, n2, … sharing one schema."""

    def __init__(self, size=3, extra_env=None, schemes=("mqtt",)):
        """`schemes`: the MQTT listeners each node's output must announce (with ws, set
        STARLING_MQTT_WS_LISTENERS in `extra_env`)."""
        self.schema = f"c_{uuid.uuid4().hex[:16]}"
        self.url = postgres_url(self.schema)
        self.extra_env = extra_env or {}
        self.schemes = tuple(schemes)
        self.nodes = {}
        for i in range(1, size + 1):
            self.start(f"n{i}")
        self.wait_for_links()

    def env(self):
        return {"STARLING_CLUSTER_SECRET": SECRET, "STARLING_HTTP_ADMIN_TOKEN": ADMIN_TOKEN, **self.extra_env}

    def start(self, node_id, extra_args=(), url=None):
        """Starts a node; `url` reaches the same database another way (through a proxy)."""
        node = Broker(extra_args=("--postgres", url or self.url, "--node-id", node_id, "--cluster", "127.0.0.1:0", *extra_args),
                      env=self.env(), http=True, schemes=(*self.schemes, "cluster"))
        node.node_id = node_id
        self.nodes[node_id] = node
        return node

    def __getitem__(self, node_id):
        return self.nodes[node_id]

    def api(self, node_id, path):
        import urllib.request
        request = urllib.request.Request(f"http://127.0.0.1:{self.nodes[node_id].http_port}{path}",
                                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def wait_for_links(self):
        """Waits until every node has an up link in each direction to every other live node
        (polling the admin API: the event has no other notification)."""
        live = [n for n, node in self.nodes.items() if node.process.poll() is None]
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            missing = []
            for node_id in live:
                links = {(l["peer"], l["direction"]) for l in self.api(node_id, "/api/v1/nodes")["links"] if l["up"]}
                missing += [(node_id, peer, d) for peer in live if peer != node_id for d in ("inbound", "outbound")
                            if (peer, d) not in links]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"cluster links not up within {READY_TIMEOUT}s: {missing}")
            time.sleep(0.05)

    def query(self, sql):
        return query(self.schema, sql)

    def stop(self):
        for node in self.nodes.values():
            node.stop()
