"""The cluster deployment files of deploy/ (issue 14): nginx runs deploy/nginx.conf in front of
a two-node cluster and sends a new client to the surviving node when one is killed; the compose
file, the Kubernetes manifest and the systemd units are checked (the container's argv against
the image's entry point, grace periods and stop time-outs against the drain, keep alives against
the balancers' idle limits, the units with systemd-analyze); the image's runtime packages hold
every shared library a release build loads; every HAProxy configuration is valid and its
WebSocket backend reaches a listener of deploy/starling.toml; the broker runs under
MemoryDenyWriteExecute; every starling_* metric the Grafana dashboard uses is exported by a
node. Every process is stopped here."""
import contextlib
import ctypes
import json
import os
import pathlib
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import tomllib
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from cluster import Cluster
from conftest import BINARY, ROOT
from mqtt_helpers import TIMEOUT, Client
from raw_client import RawClient, packet, publish, string, subscribe
from test_deploy import connect_packet
from test_haproxy import HAPROXY
from test_transports import RawWebSocket, certs  # noqa: F401 (certs: the fixture)

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


def dockerfile_stages():
    """deploy/Dockerfile's stages, each the text from its FROM line (continuation lines joined)."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return ["FROM " + stage for stage in re.split(r"^FROM ", text, flags=re.M)[1:]]


def dockerfile_exec_form(instruction):
    """The JSON (exec) form of the final stage's ENTRYPOINT or CMD, or None."""
    match = re.search(rf"^{instruction} (\[.*\])$", dockerfile_stages()[-1], re.M)
    return json.loads(match.group(1)) if match else None


def container_argv(command, args):
    """What a container runs, by the rules Docker (entrypoint/command) and Kubernetes
    (command/args) share: an overridden entry point drops the image's CMD."""
    entrypoint, cmd = dockerfile_exec_form("ENTRYPOINT") or [], dockerfile_exec_form("CMD") or []
    if command is not None:
        return list(command) + list(args or [])
    return entrypoint + list(args if args is not None else cmd)


def assert_runs_the_installed_binary(argv):
    """argv starts with the binary deploy/Dockerfile installs and the `serve` subcommand."""
    installed = re.search(r"^COPY --from=\S+ \S+ (\S+)$", dockerfile_stages()[-1], re.M).group(1)
    assert argv[0] in (installed, os.path.basename(installed)), argv
    assert argv[1] == "serve", argv


_DEFAULTS = {}


def configuration_defaults():
    """Every key's default, from the code itself (`starling generate-config`)."""
    if not _DEFAULTS:
        if not os.path.exists(BINARY):
            pytest.skip(f"{BINARY} is missing: the configuration defaults come from `starling generate-config`")
        out = subprocess.run([BINARY, "generate-config"], capture_output=True, text=True, timeout=60, check=True).stdout
        _DEFAULTS.update(tomllib.loads(out))
    return _DEFAULTS


def setting(section, key, toml=None, env=None):
    """A key's value as a node sees it: its STARLING_* variable, else the file, else the default."""
    default = configuration_defaults()[section][key]
    variable = f"STARLING_{section.upper()}_{key.upper()}"
    if env and variable in env:
        return type(default)(env[variable])
    return (toml or {}).get(section, {}).get(key, default)


def drain_seconds(toml=None, env=None):
    """How long a full node's drain takes: drain_wait + max_connections / drain_rate."""
    return (setting("server", "drain_wait", toml, env)
            + setting("mqtt", "max_connections", toml, env) / setting("server", "drain_rate", toml, env))


def haproxy_seconds(value):
    """An HAProxy time ("10m", "300ms", "1h", "30s", "20") in seconds."""
    number, unit = re.fullmatch(r"(\d+)(us|ms|s|m|h|d)?", value).groups()
    return int(number) * {"us": 1e-6, "ms": 1e-3, "s": 1, None: 1e-3, "m": 60, "h": 3600, "d": 86400}[unit]


def haproxy_idle_limit(text):
    """The shortest of an HAProxy configuration's client and server time-outs, in seconds."""
    return min(haproxy_seconds(v) for v in re.findall(r"^\s*timeout (?:client|server) (\S+)$", text, re.M))


def test_haproxy_configuration_has_the_cluster_shape():
    text = (DEPLOY / "haproxy.cfg").read_text()
    for needed in ("option httpchk GET /readyz", "inter 100ms", "on-marked-down shutdown-sessions", "option redispatch",
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


@contextlib.contextmanager
def running_nginx(tmp_path, config, port):
    """nginx on `config` (checked with `nginx -t` first) until the block ends, accepting on `port`."""
    if not os.path.exists(NGINX):
        pytest.fail("nginx is not installed (scripts/install-test-deps installs it)")
    checked = subprocess.run([NGINX, "-t", "-c", str(config), "-p", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    log = open(tmp_path / "nginx.out", "w")
    nginx = subprocess.Popen([NGINX, "-c", str(config), "-p", str(tmp_path)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:  # nginx binds its port shortly after starting: poll until it accepts
            assert nginx.poll() is None, (tmp_path / "error.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not listen"
                time.sleep(0.05)
        yield nginx
    finally:
        if nginx.poll() is None:
            nginx.terminate()
            nginx.wait(TIMEOUT)
        log.close()


@pytest.fixture
def cluster2():
    c = Cluster(size=2)
    yield c
    c.stop()


def test_nginx_sends_new_clients_to_the_live_node(cluster2, tmp_path):
    nodes = {name: {1883: f"127.0.0.1:{node.port}"} for name, node in
             (("node1", cluster2["n1"]), ("node2", cluster2["n2"]))}
    listen = {1883: free_port(), 8883: free_port(), 80: free_port()}
    config = render_nginx(tmp_path, nodes, listen)
    with running_nginx(tmp_path, config, listen[1883]):
        through = Ports(listen[1883])
        c = Client.connected(through, client_id="via-nginx")
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


ADMIN = "test-admin-token-0123456789"


def websocket_client(client_id, port, bind_address, headers=None):
    """A paho 5.0 client over WebSocket at /mqtt from `bind_address` (loopback has all of
    127/8), connected or refused; returns (client, reason code of the CONNACK)."""
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                    transport="websockets")
    c.ws_set_options(path="/mqtt", headers=headers)
    answered = queue.Queue()
    c.on_connect = lambda client, userdata, flags, reason, props: answered.put(reason.value)
    c.connect("127.0.0.1", port, bind_address=bind_address)
    c.loop_start()
    return c, answered.get(timeout=TIMEOUT)


def test_websocket_clients_behind_nginx_are_known_by_the_forwarded_address(broker_factory, tmp_path):
    """mqtt.ws_trusted_proxies: deploy/nginx.conf's WebSocket location sends X-Forwarded-For
    ($proxy_add_x_forwarded_for). nginx connects from 127.0.0.2, a trusted proxy; the client
    behind it is who decides anonymous access (auth.allow_anonymous = "loopback") and who the
    admin API shows. A header from anyone else is ignored."""
    broker = broker_factory(config_text=f"""[mqtt]
ws_listeners = ["127.0.0.1:0"]
ws_trusted_proxies = ["127.0.0.2", "127.0.0.3/32"]
[http]
admin_token = "{ADMIN}"
""", http=True, schemes=("mqtt", "ws"))
    listen = {1883: free_port(), 8883: free_port(), 80: free_port()}
    config = render_nginx(tmp_path, {"node1": {8083: f"127.0.0.1:{broker.ports['ws']}"}}, listen)
    config.write_text(config.read_text().replace("proxy_pass http://starling_ws;", "proxy_pass http://starling_ws;\n            proxy_bind 127.0.0.2;"))

    def remote_address(client_id):
        request = urllib.request.Request(f"http://127.0.0.1:{broker.http_port}/api/v1/clients/{client_id}",
                                         headers={"Authorization": f"Bearer {ADMIN}"})
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.loads(response.read())["remote_address"]

    with running_nginx(tmp_path, config, listen[1883]):
        # From 127.0.0.4 (not a proxy) through nginx: the device's own header is not believed,
        # nginx's hop is: the client is 127.0.0.4, a loopback address, anonymous allowed.
        c, reason = websocket_client("ws-local", listen[80], "127.0.0.4", {"X-Forwarded-For": "203.0.113.7"})
        assert reason == 0, reason
        assert remote_address("ws-local").startswith("127.0.0.4 (forwarded by "), remote_address("ws-local")
        c.disconnect()
        c.loop_stop()
        # From 127.0.0.3, a trusted proxy (a CDN in front of nginx, say) that names its client
        # 203.0.113.7: a remote client, refused without a user name (0x87).
        c, reason = websocket_client("ws-remote", listen[80], "127.0.0.3", {"X-Forwarded-For": "203.0.113.7"})
        assert reason == 0x87, reason
        c.loop_stop()
    # Straight to the broker from 127.0.0.1, not a proxy: the header is ignored.
    c, reason = websocket_client("ws-direct", broker.ports["ws"], "127.0.0.1", {"X-Forwarded-For": "203.0.113.7"})
    assert reason == 0, reason
    assert "203.0.113.7" not in remote_address("ws-direct") and "127.0.0.1" in remote_address("ws-direct")
    c.disconnect()
    c.loop_stop()


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
    it builds the `starling` product, which the compose file builds from it rather than pulls;
    the nodes' argv (the image's entry point, then their command) runs the binary's `serve`;
    curl (the compose health check) is on the PATH; every port the nodes listen on is exposed;
    it runs as a user of its own."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is missing (scripts/install-test-deps installs it)")
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert "--product starling" in dockerfile and "/usr/local/bin/starling" in dockerfile
    assert "curl" in compose["x-node"]["healthcheck"]["test"][1] and " curl " in dockerfile
    exposed = {int(p) for line in dockerfile.splitlines() if line.startswith("EXPOSE") for p in line.split()[1:]}
    assert_runs_the_installed_binary(container_argv(None, None))  # `docker run` with no arguments
    for name in ("node1", "node2", "node3"):
        service = compose["services"][name]
        command = service["command"]
        assert_runs_the_installed_binary(container_argv(service.get("entrypoint"), command))
        for flag in ("--mqtt", "--http", "--cluster"):
            assert int(command[command.index(flag) + 1].rsplit(":", 1)[1]) in exposed, (name, flag)
        # `up` builds the image from this repository instead of pulling starling:latest.
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (DEPLOY / "Dockerfile").resolve()
        assert re.fullmatch(r"(\$\{\w+:-)?build\}?", service["pull_policy"]), service["pull_policy"]
    assert compose["x-node"]["image"].endswith(":-starling:latest}") and "-t starling:latest" in dockerfile
    final_stage = dockerfile.rsplit("FROM ", 1)[1]
    assert "USER starling" in final_stage
    # storage.data_dir holds the spool (README "SQLite fallback"): a volume of each node's own.
    workdir = re.search(r"^WORKDIR (\S+)$", final_stage, re.M).group(1)
    assert f"VOLUME {workdir}/data" in final_stage and f"-o starling -g starling {workdir}/data" in final_stage
    for name in ("node1", "node2", "node3"):
        (volume,) = compose["services"][name]["volumes"]
        assert volume.endswith(f":{workdir}/data") and volume.split(":")[0] in compose["volumes"]


def test_compose_grace_period_covers_a_drain_and_keep_alive_fits_haproxy():
    """Docker kills a node stop_grace_period after SIGTERM: that must cover its drain
    (drain_wait + max_connections / drain_rate, each from the node's environment or the code's
    default). HAProxy closes a connection idle for its client/server time-out: the largest keep
    alive a node grants, times 1.5 (the broker's own limit), must stay below it, and be set
    (0 = unbounded)."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is missing (scripts/install-test-deps installs it)")
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    idle = haproxy_idle_limit((DEPLOY / "haproxy-compose.cfg").read_text())
    for name in ("node1", "node2", "node3"):
        service = compose["services"][name]
        env = service.get("environment", {})
        grace = haproxy_seconds(service["stop_grace_period"])  # the same duration syntax ("240s", "4m")
        assert grace > drain_seconds(env=env), (name, grace, drain_seconds(env=env))
        keepalive = setting("mqtt", "max_keepalive", env=env)
        assert 0 < keepalive and 1.5 * keepalive < idle, (name, keepalive, idle)


def kubernetes_manifest():
    yaml = pytest.importorskip("yaml", reason="PyYAML is missing (scripts/install-test-deps installs it)")
    by_kind = {}
    for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "starling.yaml").read_text()):
        by_kind.setdefault(d["kind"], []).append(d)
    return by_kind


def test_kubernetes_manifest_probes_ports_and_grace_period():
    by_kind = kubernetes_manifest()
    (sts,) = by_kind["StatefulSet"]
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    # What the container runs: its command (else the image's ENTRYPOINT), then its args.
    assert_runs_the_installed_binary(container_argv(container.get("command"), args))

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

    # The grace period covers the preStop hook and then the drain, with the node's settings.
    values = {name: e["value"] for name, e in env.items() if "value" in e}
    pre_stop = container["lifecycle"]["preStop"].get("sleep", {}).get("seconds", 0)
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain_seconds(env=values)


def test_kubernetes_disruption_budget_anti_affinity_and_load_balancer():
    """One node down at a time (PodDisruptionBudget), never two on one machine (anti-affinity
    by host name); the NLB is internet-facing with IP targets (its HTTP check reaches the pod's
    /readyz), keeps an unhealthy (draining) target's connections and a deregistered one's for the
    whole drain, and its idle timeout (350 s) is above the largest keep alive."""
    by_kind = kubernetes_manifest()
    (sts,) = by_kind["StatefulSet"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    (pdb,) = by_kind["PodDisruptionBudget"]
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()

    anti = pod["affinity"]["podAntiAffinity"]
    terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution", []) + [
        t["podAffinityTerm"] for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])]
    assert any(t["topologyKey"] == "kubernetes.io/hostname" and t["labelSelector"]["matchLabels"].items() <= labels.items()
               for t in terms), terms

    mqtt = next(s for s in by_kind["Service"] if s["spec"].get("type") == "LoadBalancer")
    annotations = mqtt["metadata"]["annotations"]
    prefix = "service.beta.kubernetes.io/aws-load-balancer-"
    assert annotations[prefix + "scheme"] == "internet-facing"
    assert annotations[prefix + "nlb-target-type"] == "ip"
    http_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    assert annotations[prefix + "healthcheck-port"] == str(http_port)
    assert annotations[prefix + "healthcheck-path"] == container["readinessProbe"]["httpGet"]["path"]
    attributes = dict(a.split("=", 1) for a in annotations[prefix + "target-group-attributes"].split(","))
    assert attributes["target_health_state.unhealthy.connection_termination.enabled"] == "false"
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    drain = drain_seconds(env=env)
    assert int(attributes["target_health_state.unhealthy.draining_interval_seconds"]) >= drain
    assert int(attributes["deregistration_delay.timeout_seconds"]) >= drain
    # New clients stop within the check's interval x unhealthy threshold: inside drain_wait.
    interval = int(annotations[prefix + "healthcheck-interval"])
    assert interval * int(annotations[prefix + "healthcheck-unhealthy-threshold"]) < setting("server", "drain_wait", env=env)
    nlb_idle_timeout = 350  # seconds, an NLB's TCP idle timeout by default
    assert 0 < setting("mqtt", "max_keepalive", env=env) < nlb_idle_timeout


def unit_settings(text):
    """{key: [values]} of a unit file's [Service] section (a key may repeat)."""
    section, values = None, {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


SYSTEMD_SECURITY_LIMIT = 5.0  # `systemd-analyze security` exposure above which a unit is "MEDIUM"


@pytest.mark.parametrize("unit, instance", [("starling.service", "starling.service"),
                                            ("starling@.service", "starling@n1.service")])
def test_systemd_unit(unit, instance, tmp_path):
    """Each unit: TimeoutStopSec covers the drain of the configuration it ships with
    (deploy/starling.toml, the code's defaults for what it does not set); a configuration error
    (exit 2) is not restarted; the data directory is the unit's state directory;
    `systemd-analyze verify` finds nothing and `systemd-analyze security` rates it below 5.0."""
    text = (DEPLOY / unit).read_text()
    service = unit_settings(text)
    instance_name = instance.split("@")[1].split(".")[0] if "@" in instance else ""
    if instance_name:
        assert "--node-id %i" in text  # the instance name is the node id
    toml = tomllib.loads((DEPLOY / "starling.toml").read_text())

    (stop,) = service["TimeoutStopSec"]
    assert int(stop) >= drain_seconds(toml=toml), (stop, drain_seconds(toml=toml))
    assert "2" in " ".join(service["RestartPreventExitStatus"]).split()

    # Where the spool goes: --data-dir, else storage.data_dir, relative to WorkingDirectory (else
    # /); it must be inside the state directory, the one place ProtectSystem=strict leaves writable.
    def specifiers(value):
        return value.replace("%S", "/var/lib").replace("%i", instance_name)

    (exec_start,) = service["ExecStart"]
    argv = exec_start.split()
    data_dir = argv[argv.index("--data-dir") + 1] if "--data-dir" in argv else setting("storage", "data_dir", toml)
    working = specifiers(service.get("WorkingDirectory", ["/"])[0])
    data_dir = os.path.normpath(os.path.join(working, specifiers(data_dir)))
    state_dirs = [os.path.join("/var/lib", specifiers(d)) for v in service["StateDirectory"] for d in v.split()]
    assert any(data_dir == d or data_dir.startswith(d + "/") for d in state_dirs), (data_dir, state_dirs)
    assert service["ProtectSystem"] == ["strict"] and service["CapabilityBoundingSet"] == [""]

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is missing: the checks of the text above are all this machine can do")
    # The unit as installed, its binary replaced by a stub when /usr/local/bin/starling is absent.
    binary = re.match(r"(\S+)", exec_start).group(1)
    if not os.path.exists(binary):
        stub = tmp_path / "starling"
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
        text = text.replace(binary, str(stub))
    path = tmp_path / instance
    path.write_text(text)
    result = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if instance.split("@")[0] in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr

    offline = "--offline" in subprocess.run([analyze, "security", "--help"], capture_output=True, text=True, timeout=60).stdout
    if not offline:
        pytest.skip("this systemd-analyze has no `security --offline`: the exposure is not rated here")
    result = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(path)], capture_output=True, text=True,
                            timeout=60)
    exposure = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert exposure, result.stdout + result.stderr
    print(f"{instance}: systemd-analyze security exposure {exposure.group(1)}")
    assert float(exposure.group(1)) < SYSTEMD_SECURITY_LIMIT, result.stdout


RELEASE_BINARY = ROOT / ".build" / "release" / "starling"


def needed_libraries(path):
    """The NEEDED entries and the RUNPATH directories ($ORIGIN resolved) of an ELF file."""
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, timeout=60, check=True).stdout
    runpath = re.search(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[([^\]]*)\]", out)
    dirs = [d.replace("$ORIGIN", os.path.dirname(os.path.realpath(path))) for d in (runpath.group(1).split(":") if runpath else [])]
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out), dirs


def owning_package(path):
    """The Debian package that installed `path` (dpkg -S; with merged /usr a file may be known
    under /lib or /usr/lib), or None."""
    real = os.path.realpath(path)
    candidates = []
    for p in (path, real):
        candidates += [p, p[4:] if p.startswith("/usr/") else "/usr" + p]
    for candidate in candidates:
        result = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True, timeout=60)
        if result.returncode == 0:
            return result.stdout.split(":")[0].strip()
    return None


def minimal_debian_packages():
    """What a minimal Debian (debootstrap minbase, as debian:*-slim) holds: the installed
    packages that are Essential or of Priority required, and everything they depend on."""
    fields = "${Package}\t${Status}\t${Priority}\t${Essential}\t${Provides}\t${Pre-Depends}\t${Depends}\n"
    out = subprocess.run(["dpkg-query", "-W", "-f", fields], capture_output=True, text=True, timeout=60, check=True).stdout
    installed, provided_by, depends, seeds = set(), {}, {}, []
    for line in out.splitlines():
        name, status, priority, essential, provides, pre_depends, plain_depends = line.split("\t")
        if not status.endswith(" installed"):
            continue
        installed.add(name)
        for virtual in filter(None, (p.split()[0] for p in provides.split(",") if p.strip())):
            provided_by.setdefault(virtual, set()).add(name)
        depends[name] = [[a.split()[0].split(":")[0] for a in group.split("|")]
                         for group in f"{pre_depends},{plain_depends}".split(",") if group.strip()]
        if priority == "required" or essential == "yes":
            seeds.append(name)
    closure = set()
    while seeds:
        name = seeds.pop()
        if name in closure:
            continue
        closure.add(name)
        for alternatives in depends.get(name, []):
            for alternative in alternatives:
                found = ({alternative} & installed) | provided_by.get(alternative, set())
                if found:
                    seeds.extend(found)
                    break
    return closure


def test_runtime_image_installs_every_shared_library_the_binary_loads():
    """Each shared library the release binary needs (readelf -d) is found as the loader would
    (its RUNPATH, then ldconfig -p) and mapped to its Debian package (dpkg -S). A Swift runtime
    library no package owns is linked statically by the image's build (--static-swift-stdlib:
    its archive is in the toolchain's swift_static), so what it needs in turn is needed. Every
    package must be installed by the Dockerfile's runtime stage or be part of its slim base
    (Essential or Priority required, and their dependencies). The release binary where it was
    built, else the suite's debug one (CI's clean clone): the same products link the same system
    libraries, and the debug build's Swift runtime libraries are followed as above."""
    binary = RELEASE_BINARY if RELEASE_BINARY.exists() else pathlib.Path(BINARY)
    if not binary.exists():
        pytest.skip(f"neither {RELEASE_BINARY} nor {BINARY} is built: no NEEDED list to check")
    if shutil.which("dpkg") is None or shutil.which("readelf") is None:
        pytest.skip("dpkg and readelf (binutils) are needed to map libraries to Debian packages")
    build_stage, runtime_stage = dockerfile_stages()[0], dockerfile_stages()[-1]
    base = re.match(r"FROM (\S+)", runtime_stage).group(1)
    release = dict(line.split("=", 1) for line in open("/etc/os-release").read().split("\n") if "=" in line)
    codename = release.get("VERSION_CODENAME", "").strip('"')
    if not base.startswith("debian:") or codename not in base:
        pytest.skip(f"the image's base is {base} but this machine runs {codename or 'no Debian'}: package names may differ")
    installed = {p for m in re.finditer(r"apt-get install ([^&\n]*)", runtime_stage) for p in m.group(1).split()
                 if not p.startswith("-")}
    ldconfig = {}
    for name, path in re.findall(r"^\s*(\S+) \([^)]*\) => (\S+)$", subprocess.run(
            ["ldconfig", "-p"], capture_output=True, text=True, timeout=60, check=True).stdout, re.M):
        ldconfig.setdefault(name, path)

    packages, static, seen = {}, [], set()
    todo = [(library, binary) for library in needed_libraries(binary)[0]]
    while todo:
        library, needed_by = todo.pop()
        if library in seen:
            continue
        seen.add(library)
        runpath = needed_libraries(needed_by)[1]
        path = next((os.path.join(d, library) for d in runpath if os.path.exists(os.path.join(d, library))), ldconfig.get(library))
        assert path, f"{library} (needed by {needed_by}) is not found"
        package = owning_package(path)
        if package is not None:
            packages.setdefault(package, []).append(library)
            continue
        # Not Debian's: a Swift runtime library (usr/lib/swift/linux/libX.so), linked statically
        # into the image's binary (usr/lib/swift_static/linux/libX.a).
        platform_dir = os.path.dirname(path)
        archive = os.path.join(os.path.dirname(os.path.dirname(platform_dir)), "swift_static", os.path.basename(platform_dir),
                               library.split(".so")[0] + ".a")
        assert os.path.exists(archive), f"{path} belongs to no package and has no static archive ({archive})"
        static.append(library)
        todo += [(dependency, path) for dependency in needed_libraries(path)[0]]
    if static:
        assert "--static-swift-stdlib" in build_stage, f"{static} are linked statically only with --static-swift-stdlib"
    assert "libsqlite3.so.0" in seen  # GRDB uses the system SQLite
    base_packages = minimal_debian_packages()
    missing = {p: libs for p, libs in packages.items() if p not in installed and p not in base_packages}
    assert not missing, f"the runtime stage of deploy/Dockerfile installs neither these packages nor has them in {base}: {missing}"


def test_every_shipped_haproxy_configuration_is_valid(tmp_path):
    """`haproxy -c` of each deploy/haproxy*.cfg, server names that do not resolve here (compose
    service names) replaced by 127.0.0.1."""
    configurations = sorted(DEPLOY.glob("haproxy*.cfg"))
    assert {p.name for p in configurations} >= {"haproxy.cfg", "haproxy-compose.cfg"}

    def resolvable(host):
        try:
            socket.getaddrinfo(host, None)
            return True
        except OSError:
            return False

    for configuration in configurations:
        text = re.sub(r"^(\s*server \S+ )([^\s:]+):(\d+)",
                      lambda m: m.group(1) + (m.group(2) if resolvable(m.group(2)) else "127.0.0.1") + ":" + m.group(3),
                      configuration.read_text(), flags=re.M)
        path = tmp_path / configuration.name
        path.write_text(text)
        result = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{configuration.name}: {result.stdout}{result.stderr}"


def test_keep_alive_fits_the_idle_limit_of_haproxy():
    """deploy/starling.toml behind deploy/haproxy.cfg: a largest keep alive is set (0 would let
    a client stay silent longer than HAProxy keeps an idle connection), and 1.5 times it (when
    the broker gives up on a silent client) is below HAProxy's client/server time-outs."""
    toml = tomllib.loads((DEPLOY / "starling.toml").read_text())
    keepalive = setting("mqtt", "max_keepalive", toml)
    assert 0 < keepalive and 1.5 * keepalive < haproxy_idle_limit((DEPLOY / "haproxy.cfg").read_text())


def shipped_configuration(certs, tmp_path):
    """deploy/starling.toml with its addresses on loopback ports the kernel picks, and the
    test's certificate and data directory."""
    text = (DEPLOY / "starling.toml").read_text()
    text = re.sub(r'"0\.0\.0\.0:\d+"', '"127.0.0.1:0"', text)
    for old, new in (("/etc/starling/tls/fullchain.pem", str(certs / "server.pem")),
                     ("/etc/starling/tls/privkey.pem", str(certs / "server.key")), ('"/var/lib/starling"', f'"{tmp_path / "data"}"')):
        assert old in text, old
        text = text.replace(old, new)
    return text


def add_user(config, preexec_fn=None):
    """`starling ctl users add device-1` (password "pw") in the store of the configuration file."""
    added = subprocess.run([BINARY, "ctl", "users", "add", "device-1", "--config", str(config)], input="pw\n",
                           capture_output=True, text=True, timeout=60, preexec_fn=preexec_fn)
    assert added.returncode == 0, added.stderr


def test_haproxy_websocket_backend_reaches_a_listener_of_the_shipped_configuration(broker_factory, certs, tmp_path):  # noqa: F811
    """deploy/haproxy.cfg's starling_ws backend sends to port 8083 of each node: deploy/starling.toml
    opens a WebSocket listener on that port, and a broker started with it (addresses on free
    loopback ports) accepts MQTT over WebSocket there, behind the PROXY header HAProxy sends."""
    haproxy = (DEPLOY / "haproxy.cfg").read_text()
    backend = re.search(r"^backend starling_ws\n(.*?)(?=^\S|\Z)", haproxy, re.M | re.S).group(1)
    ports = {int(p) for p in re.findall(r"^\s*server \S+ [^\s:]+:(\d+)", backend, re.M)}
    assert len(ports) == 1, backend
    toml = tomllib.loads((DEPLOY / "starling.toml").read_text())
    ws_ports = {int(address.rsplit(":", 1)[1]) for address in setting("mqtt", "ws_listeners", toml)}
    assert ports <= ws_ports, f"haproxy.cfg's WebSocket backend uses {ports}; starling.toml opens {ws_ports}"
    assert setting("mqtt", "ws_path", toml) == "/mqtt" and re.search(r"acl is_mqtt path /mqtt$", haproxy, re.M)

    text = shipped_configuration(certs, tmp_path)
    config = tmp_path / "starling.toml"
    config.write_text(text)
    add_user(config)
    broker = broker_factory(config_text=text, http=True, schemes=("mqtt", "mqtts", "ws"))
    # HAProxy's send-proxy-v2 header (mqtt.proxy_protocol covers the WebSocket listeners too).
    ws = RawWebSocket(broker.ports["ws"], proxy_header=b"PROXY TCP4 198.51.100.10 10.0.0.11 50126 80\r\n")
    assert ws.response.startswith("HTTP/1.1 101"), ws.response
    ws.send(0x2, connect_packet("through-ws", "device-1", "pw"))
    assert ws.frame() == (0x2, b"\x20\x02\x00\x00")  # CONNACK, accepted
    ws.sock.close()


class SocketClient(RawClient):
    """RawClient's packet reading over a socket of the test's own (TLS here)."""

    def __init__(self, sock):
        self.sock, self.buffer = sock, b""


PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1


def test_broker_runs_with_memory_deny_write_execute(certs, tmp_path):  # noqa: F811
    """The systemd units set MemoryDenyWriteExecute=yes: the broker must never map memory
    writable and executable. The kernel's own form of it (prctl PR_SET_MDWE, Linux 6.3; kept
    across execve) is set for `ctl users add` and for a broker run with deploy/starling.toml
    (TLS, SQLite, ingest, PBKDF2): a user is added, a device signs in over TLS, publishes QoS 1,
    gets its own message back, and SIGTERM drains and ends the broker with status 0."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) < 0:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3 and later): MemoryDenyWriteExecute not tried")

    def deny_write_execute():  # in the child, before execve
        if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0 or libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) != 1:
            os._exit(97)

    text = shipped_configuration(certs, tmp_path)
    config = tmp_path / "starling.toml"
    config.write_text(text)
    add_user(config, preexec_fn=deny_write_execute)
    env = dict(os.environ, STARLING_SERVER_DRAIN_WAIT="0")
    stderr = open(tmp_path / "stderr.log", "w")
    process = subprocess.Popen([BINARY, "serve", "--config", str(config)], stdout=subprocess.PIPE, stderr=stderr, text=True,
                               env=env, cwd=tmp_path, preexec_fn=deny_write_execute)
    try:
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
        ports, deadline = {}, time.monotonic() + 60
        while not {"mqtt", "mqtts", "ws", "http"} <= set(ports):
            assert process.poll() is None, f"exit {process.returncode}: {(tmp_path / 'stderr.log').read_text()}"
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("the broker did not listen: " + (tmp_path / "stderr.log").read_text())
            if line.startswith("starling: listening "):
                scheme, address = line.split()[2:4]
                ports[scheme] = int(address.rsplit(":", 1)[1])

        context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        with socket.create_connection(("127.0.0.1", ports["mqtts"]), timeout=30) as raw:
            raw.sendall(b"PROXY TCP4 198.51.100.8 10.0.0.11 50124 8883\r\n")
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                client = SocketClient(s)
                client.send(connect_packet("mdwe", "device-1", "pw"))
                assert client.read_packet() == (0x20, b"\x00\x00")
                client.send(subscribe("mdwe/#", options=1, packet_id=1, version=4))
                assert client.read_packet() == (0x90, b"\x00\x01\x01")
                client.send(publish("mdwe/x", b"no W+X", qos=1, packet_id=2, version=4))
                received = {client.read_packet() for _ in range(2)}  # PUBACK and the delivery, in either order
                assert (0x40, b"\x00\x02") in received
                assert any(first >> 4 == 3 and body.endswith(b"no W+X") for first, body in received), received
                client.send(packet(0xE0, b""))
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT * 6) == 0, (tmp_path / "stderr.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stderr.close()


def dashboard_metrics():
    dashboard = json.loads((DEPLOY / "grafana" / "starling-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    return {name for e in exprs for name in re.findall(r"\bstarling_[a-z_]+", e)}


def test_dashboard_uses_only_exported_metrics(cluster2):
    sub = Client.connected(cluster2["n2"], client_id="dash-sub")
    sub.subscribe("dash/#", qos=1)
    pub = Client.connected(cluster2["n1"], client_id="dash-pub")
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
