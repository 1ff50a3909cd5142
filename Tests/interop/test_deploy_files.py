"""The cluster deployment files of deploy/ (issue 14): nginx runs deploy/nginx.conf in front of
a two-node cluster and sends a new client to the surviving node when one is killed; the compose
file, the Kubernetes manifest and the systemd template unit are checked; every starling_*
metric the Grafana dashboard uses is exported by a node. Every process is stopped here."""
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from cluster import Cluster
from conftest import BINARY, ROOT
from mqtt_helpers import TIMEOUT, Client
from test_haproxy import HAPROXY

DEPLOY = ROOT / "deploy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
FAILOVER_DEADLINE = 30  # seconds for a new connection through nginx to reach the live node


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ports:
    """What `Client` needs of a broker: a host and an MQTT port."""

    def __init__(self, port):
        self.host = "127.0.0.1"
        self.ports = {"mqtt": port}


def test_haproxy_configuration_has_the_cluster_shape():
    text = (DEPLOY / "haproxy.cfg").read_text()
    for needed in ("option httpchk GET /readyz", "inter 200ms", "on-marked-down shutdown-sessions", "option redispatch",
                   "send-proxy-v2", "bind :8883", "timeout tunnel", "path /mqtt", "mode http"):
        assert needed in text, needed
    assert len(re.findall(r"^\s*server node\d 10\.0\.0\.\d+:1883", text, re.M)) == 3
    result = subprocess.run([HAPROXY, "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def render_nginx(tmp_path, nodes, listen):
    """deploy/nginx.conf with nodeN.internal:PORT replaced by the test's addresses (servers of
    nodes the test does not run are removed), `listen PORT` by free loopback ports, and the pid,
    logs and temp paths moved into tmp_path; nginx runs in the foreground."""
    text = (DEPLOY / "nginx.conf").read_text()

    def server(match):
        name, port, options = match.group(1), int(match.group(2)), match.group(3)
        if name not in nodes:
            return ""
        return f"server {nodes[name].get(port, '127.0.0.1:' + str(free_port()))}{options};"

    text = re.sub(r"server (node\d)\.internal:(\d+)([^;]*);", server, text)
    text = re.sub(r"listen (\d+);", lambda m: f"listen 127.0.0.1:{listen[int(m.group(1))]};", text)
    text = text.replace("access_log /var/log/nginx/access.log;", f"""access_log {tmp_path}/access.log;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;""")
    text = text.replace("worker_processes auto;", f"worker_processes 1;\ndaemon off;\npid {tmp_path}/nginx.pid;\n"
                        f"error_log {tmp_path}/error.log info;")
    text = text.replace("worker_rlimit_nofile 1048576;\n", "").replace("worker_connections 65536;", "worker_connections 256;")
    assert "node" not in re.sub(r"#.*", "", text).replace("nodes", ""), text
    path = tmp_path / "nginx.conf"
    path.write_text(text)
    return path


@pytest.fixture
def cluster2():
    c = Cluster(size=2)
    yield c
    c.stop()


def test_nginx_sends_new_clients_to_the_live_node(cluster2, tmp_path):
    if not os.path.exists(NGINX):
        pytest.fail("nginx is not installed (scripts/install-test-deps installs it)")
    nodes = {name: {1883: f"127.0.0.1:{node.port}"} for name, node in
             (("node1", cluster2["n1"]), ("node2", cluster2["n2"]))}
    listen = {1883: free_port(), 8883: free_port(), 80: free_port()}
    config = render_nginx(tmp_path, nodes, listen)
    checked = subprocess.run([NGINX, "-t", "-c", str(config), "-p", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    log = open(tmp_path / "nginx.out", "w")
    nginx = subprocess.Popen([NGINX, "-c", str(config), "-p", str(tmp_path)], stdout=log, stderr=subprocess.STDOUT)
    try:
        through = Ports(listen[1883])
        deadline = time.monotonic() + TIMEOUT
        while True:  # nginx binds its port shortly after starting: poll until it accepts
            assert nginx.poll() is None, (tmp_path / "error.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", listen[1883]), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not listen"
                time.sleep(0.05)

        c = Client(through, client_id="via-nginx")
        c.connect()
        c.subscribe("nginx/#", qos=1)
        c.client.publish("nginx/x", b"through nginx", qos=1)
        assert c.message().payload == b"through nginx"
        c.disconnect()

        cluster2["n1"].process.kill()
        cluster2["n1"].process.wait(TIMEOUT)

        # A new connection through nginx reaches n2: nginx's passive check marks n1 failed and
        # retries the connection on the next upstream.
        deadline = time.monotonic() + FAILOVER_DEADLINE
        for attempt in range(1000):
            c = Client(through, client_id=f"after-kill-{attempt}")
            try:
                c.connect()
                break
            except Exception:
                c.client.loop_stop()
                assert time.monotonic() < deadline, "no connection through nginx after n1 was killed"
                time.sleep(0.2)  # bounded retry while nginx notices the dead upstream
        c.subscribe("nginx/#", qos=1)
        c.client.publish("nginx/y", b"after the kill", qos=1)
        assert c.message().payload == b"after the kill"
        clients = json.dumps(cluster2.api("n2", "/api/v1/clients"))
        assert c.client._client_id.decode() in clients, clients
        c.disconnect()
    finally:
        if nginx.poll() is None:
            nginx.terminate()
            nginx.wait(TIMEOUT)
        log.close()


def test_docker_compose_file_is_valid(tmp_path):
    text = (DEPLOY / "docker-compose.yml").read_text()
    for needed in ("postgres:", "node1:", "node2:", "node3:", "haproxy:", "env_file: cluster.env", "healthcheck:", "--node-id"):
        assert needed in text, needed
    assert (DEPLOY / "cluster.env.example").exists()
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60).returncode != 0:
        pytest.skip("`docker compose` is not available here (the compose plugin is needed to validate deploy/docker-compose.yml)")
    work = tmp_path / "deploy"
    shutil.copytree(DEPLOY, work)
    shutil.copy(work / "cluster.env.example", work / "cluster.env")
    result = subprocess.run([docker, "compose", "-f", str(work / "docker-compose.yml"), "config", "-q"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_dockerfile_builds_what_the_compose_file_runs():
    """deploy/Dockerfile (not built here: no container engine) against deploy/docker-compose.yml:
    it builds the `starling` product, puts it and curl (the compose health check) on the PATH,
    exposes every port the nodes' commands listen on, and runs as a user of its own."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is missing (scripts/install-test-deps installs it)")
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert "--product starling" in dockerfile and "/usr/local/bin/starling" in dockerfile
    assert "curl" in compose["x-node"]["healthcheck"]["test"][1] and " curl " in dockerfile
    exposed = {int(p) for line in dockerfile.splitlines() if line.startswith("EXPOSE") for p in line.split()[1:]}
    for name in ("node1", "node2", "node3"):
        command = compose["services"][name]["command"]
        assert command[0] == "starling"
        for flag in ("--mqtt", "--http", "--cluster"):
            assert int(command[command.index(flag) + 1].rsplit(":", 1)[1]) in exposed, (name, flag)
    assert compose["x-node"]["image"].endswith(":-starling:latest}") and "-t starling:latest" in dockerfile
    final_stage = dockerfile.rsplit("FROM ", 1)[1]
    assert "USER starling" in final_stage
    # storage.data_dir holds the spool (README "SQLite fallback"): a volume of each node's own.
    workdir = re.search(r"^WORKDIR (\S+)$", final_stage, re.M).group(1)
    assert f"VOLUME {workdir}/data" in final_stage and f"-o starling -g starling {workdir}/data" in final_stage
    for name in ("node1", "node2", "node3"):
        (volume,) = compose["services"][name]["volumes"]
        assert volume.endswith(f":{workdir}/data") and volume.split(":")[0] in compose["volumes"]


def test_kubernetes_manifest_probes_ports_and_grace_period():
    yaml = pytest.importorskip("yaml", reason="PyYAML is missing (scripts/install-test-deps installs it)")
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "starling.yaml").read_text()))
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    (sts,) = by_kind["StatefulSet"]
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]

    def flag(name):
        return args[args.index(name) + 1]

    http_port = int(flag("--http").rsplit(":", 1)[1])
    cluster_port = int(flag("--cluster").rsplit(":", 1)[1])
    assert flag("--node-id") == "$(POD_NAME)"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": http_port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": http_port}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == http_port and ports["cluster"] == cluster_port
    env = {e["name"]: e for e in container["env"]}
    assert env["STARLING_CLUSTER_SECRET"]["valueFrom"]["secretKeyRef"]["key"]
    assert f":{cluster_port}" in env["STARLING_CLUSTER_ADVERTISE"]["value"]
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"

    headless = next(s for s in by_kind["Service"] if s["spec"].get("clusterIP") == "None")
    assert sts["spec"]["serviceName"] == headless["metadata"]["name"]
    assert [p["port"] for p in headless["spec"]["ports"]] == [cluster_port]
    mqtt = next(s for s in by_kind["Service"] if s is not headless)
    assert ports["mqtt"] in [p.get("port") for p in mqtt["spec"]["ports"]]

    # storage.data_dir (the spool) on a volume that outlives the pod, writable by the image's user.
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/var/lib/starling/data"
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == [mount["name"]]
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"] == 10001
    assert "--uid 10001" in (DEPLOY / "Dockerfile").read_text()

    drain_wait = float(env["STARLING_SERVER_DRAIN_WAIT"]["value"])
    drain_rate = 500  # server.drain_rate default
    clients = 100_000  # what the manifest's comment sizes the grace period for
    assert pod["terminationGracePeriodSeconds"] > drain_wait + clients / drain_rate


def test_systemd_template_unit(tmp_path):
    text = (DEPLOY / "starling@.service").read_text()
    assert "--node-id %i" in text
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", text, re.M).group(1))
    assert stop > 5 + 100_000 / 500  # drain_wait + 100 000 clients at drain_rate
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # the text checks above are all this machine can do
    unit = tmp_path / "starling@n1.service"
    unit.write_text(text.replace("/usr/local/bin/starling", BINARY))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [l for l in (result.stdout + result.stderr).splitlines() if "starling@" in l]
    assert not problems, problems


def dashboard_metrics():
    dashboard = json.loads((DEPLOY / "grafana" / "starling-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    return {name for e in exprs for name in re.findall(r"\bstarling_[a-z_]+", e)}


def test_dashboard_uses_only_exported_metrics(cluster2):
    sub = Client(cluster2["n2"], client_id="dash-sub")
    sub.connect()
    sub.subscribe("dash/#", qos=1)
    pub = Client(cluster2["n1"], client_id="dash-pub")
    pub.connect()
    deadline = time.monotonic() + TIMEOUT
    while True:  # a subscription reaches the peer asynchronously: publish until one crosses
        pub.client.publish("dash/x", b"crossing", qos=1)
        try:
            assert sub.message(timeout=0.5).payload == b"crossing"
            break
        except Exception:
            assert time.monotonic() < deadline, "no message crossed from n1 to n2"
    status, text = cluster2["n1"].get("/metrics")
    assert status == 200
    exported = set(re.findall(r"^(starling_[a-z_]+)", text, re.M))
    missing = dashboard_metrics() - exported
    assert not missing, f"dashboard uses metrics /metrics does not export: {sorted(missing)}"
    prometheus = (DEPLOY / "prometheus.yml").read_text()
    assert "metrics_path: /metrics" in prometheus
    pub.disconnect()
    sub.disconnect()
