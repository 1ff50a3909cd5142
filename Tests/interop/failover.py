"""The seed scenario's parts, shared by test_failover.py and bench/failover: a real HAProxy run
from deploy/haproxy.cfg in front of a `Cluster`, and devices that stream readings through it
the way a paho-mqtt device does (persistent session, automatic reconnect, unacknowledged
messages re-sent with DUP after a reconnect)."""
import os
import pathlib
import re
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = pathlib.Path(__file__).resolve().parents[2]
HAPROXY = os.environ.get("HAPROXY") or "/usr/sbin/haproxy"
DEADLINE = 120  # seconds any awaited state may take; only bounds a broken run


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render_haproxy(text, nodes, mqtt_port, ws_port, socket_path, maxconn=4096):
    """deploy/haproxy.cfg for this machine: the MQTT and WebSocket front ends on loopback ports,
    the servers node1..nodeN at the cluster's nodes (MQTT, WebSocket and /readyz ports of each;
    nodes maps "nodeN" to (mqtt, ws, http)), a runtime socket to re-point a restarted node,
    maxconn within an unprivileged process's file limit; the TLS front end is left out (its
    nodes would need certificates; it is the MQTT one's twin)."""
    out, skip = [], False
    for line in text.splitlines():
        if re.match(r"^(frontend|backend|global|defaults)\b", line):
            skip = line.split()[1:2] in (["mqtts"], ["starling_mqtts"])
        if skip:
            continue
        if line.strip() == "global":
            out += [line, f"    stats socket {socket_path} mode 600 level admin"]
            continue
        line = re.sub(r"^(\s+maxconn) \d+$", rf"\1 {maxconn}", line)
        line = line.replace("bind :1883", f"bind 127.0.0.1:{mqtt_port}").replace("bind :80", f"bind 127.0.0.1:{ws_port}")
        line = line.replace(" check port 8080 ", " check ")
        server = re.match(r"^(\s+server (node\d+) )10\.0\.0\.\d+:(1883|8083)$", line)
        if server:
            name = server.group(2)
            if name not in nodes:
                continue
            mqtt_p, ws_p, http_p = nodes[name]
            line = f"{server.group(1)}127.0.0.1:{mqtt_p if server.group(3) == '1883' else ws_p} port {http_p}"
            if name == "node3":
                # The file names three nodes; a larger cluster gets the same line for each other.
                for extra in sorted((n for n in nodes if int(n[4:]) > 3), key=lambda n: int(n[4:])):
                    mqtt_e, ws_e, http_e = nodes[extra]
                    out.append(line)
                    line = (f"{server.group(1).replace('node3', extra)}127.0.0.1:"
                            f"{mqtt_e if server.group(3) == '1883' else ws_e} port {http_e}")
        out.append(line)
    return "\n".join(out) + "\n"


class Balancer:
    """HAProxy with deploy/haproxy.cfg in front of a cluster whose nodes are n1, n2, … (servers
    node1, node2, …). `repoint(node_id)` tells HAProxy a restarted node's new ports."""

    def __init__(self, cluster, maxconn=4096):
        self.cluster = cluster
        self.dir = tempfile.TemporaryDirectory(prefix="starling-failover-")
        self.port, self.ws_port = free_port(), free_port()
        self.socket_path = pathlib.Path(self.dir.name) / "admin.sock"
        nodes = {self.server(n): self.ports(n) for n in cluster.nodes}
        text = render_haproxy((ROOT / "deploy" / "haproxy.cfg").read_text(), nodes, self.port, self.ws_port, self.socket_path,
                              maxconn)
        self.config = pathlib.Path(self.dir.name) / "haproxy.cfg"
        self.config.write_text(text)
        self.log_path = pathlib.Path(self.dir.name) / "haproxy.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config)], stdout=self.log, stderr=subprocess.STDOUT)
        self.host = "127.0.0.1"

    @staticmethod
    def server(node_id):
        return "node" + node_id.lstrip("n")

    def ports(self, node_id):
        node = self.cluster[node_id]
        return node.port, node.ports.get("ws", node.port), node.http_port

    def command(self, line):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(str(self.socket_path))
            s.sendall(line.encode() + b"\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data.decode()

    def states(self, backend="starling_mqtt"):
        """{server: status} of a backend as HAProxy's runtime API reports it ("UP", "DOWN", …)."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
        return {r["svname"]: r["status"].split()[0] for r in rows if r.get("pxname") == backend and r["svname"].startswith("node")}

    def repoint(self, node_id):
        """A restarted node listens on new ports: point its servers (MQTT and WebSocket) there."""
        mqtt_p, ws_p, http_p = self.ports(node_id)
        for backend, port in (("starling_mqtt", mqtt_p), ("starling_ws", ws_p)):
            for command in (f"set server {backend}/{self.server(node_id)} addr 127.0.0.1 port {port}",
                            f"set server {backend}/{self.server(node_id)} check-port {http_p}"):
                reply = self.command(command)
                assert "No such" not in reply and "unknown" not in reply.lower(), f"{command}: {reply}"

    def wait_for(self, wanted, backend="starling_mqtt"):
        """Waits until the servers of `wanted` ({node_id: "UP"/"DOWN"}) have those states."""
        deadline = time.monotonic() + DEADLINE
        while True:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                states = self.states(backend)
            except OSError:
                states = {}  # the runtime socket is not there yet
            if all(states.get(self.server(n)) == s for n, s in wanted.items()):
                return
            assert time.monotonic() < deadline, f"HAProxy states {states}, wanted {wanted}"
            time.sleep(0.05)  # HAProxy's state has no notification: poll it

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.log.close()
        self.dir.cleanup()


def acknowledged(info):
    """Whether the PUBACK / PUBCOMP of a paho message arrived. Not `acknowledged(info)`: a
    message published while the client is disconnected keeps rc MQTT_ERR_NO_CONN, for which
    is_published() raises forever, although paho sends it after the reconnect and marks it
    published on its acknowledgement."""
    with info._condition:
        return info._published


def keep_pubrel_across_reconnects(client, replays):
    """paho-mqtt 2.2 turns a released QoS 2 message back into a PUBLISH (DUP 0) when a reconnect
    fails before its CONNACK and the next one resets the messages again (`resend_pubrel` is not
    kept by `_messages_reconnect_reset_out`), against [MQTT-4.3.3-3] (no PUBLISH after its
    PUBREL). By the protocol the broker then takes it for a new message: a second row and a
    second delivery. The devices here are made to keep the PUBREL, as the protocol asks; each
    message paho would have sent again is counted in `replays` (README "What the cluster
    promises under faults": clients that re-send a released QoS 2 message)."""
    reset = client._messages_reconnect_reset_out

    def reset_keeping_pubrel():
        with client._out_message_mutex:
            released = [m for m in client._out_messages.values()
                        if m.qos == 2 and m.state in (mqtt.mqtt_ms_wait_for_pubcomp, mqtt.mqtt_ms_resend_pubrel)]
            replayed = [m for m in released if m.state == mqtt.mqtt_ms_resend_pubrel]
        reset()
        with client._out_message_mutex:
            for m in released:
                m.state = mqtt.mqtt_ms_resend_pubrel
        replays.extend(m.payload for m in replayed)

    client._messages_reconnect_reset_out = reset_keeping_pubrel


class Device:
    """A device streaming readings through the balancer: a paho client with a persistent session
    (3.1.1 Clean Session 0, or 5.0 Clean Start 0 with a Session Expiry Interval) that reconnects
    by itself. Readings are "ID:SEQ" on `topic`, at most `window` unacknowledged at once, one
    every `interval` seconds (the device's sampling rate). `acked()` are the readings whose
    PUBACK / PUBCOMP arrived."""

    def __init__(self, host, port, client_id, protocol=mqtt.MQTTv311, qos=1, topic=None, window=10, interval=0.01,
                 transport="tcp"):
        self.client_id, self.qos, self.window, self.interval = client_id, qos, window, interval
        self.topic = topic or f"readings/{client_id}"
        kwargs = {"client_id": client_id, "protocol": protocol, "callback_api_version": mqtt.CallbackAPIVersion.VERSION2,
                  "transport": transport}
        if protocol != mqtt.MQTTv5:
            kwargs["clean_session"] = False
        self.client = mqtt.Client(**kwargs)
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt")
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.5)
        self.pubrel_replays = []  # released QoS 2 readings paho would have published again
        keep_pubrel_across_reconnects(self.client, self.pubrel_replays)
        self.client.max_inflight_messages_set(window)
        self.sent = []  # (payload, MQTTMessageInfo)
        self.lock = threading.Condition()
        self.acks = 0
        self.ack_times = []  # monotonic time of each acknowledgement
        self.connects = 0
        self.disconnect_times = []
        self.connect_times = []  # monotonic times of each CONNACK that accepted
        self.client.on_publish = self._on_publish
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.running = False
        properties = None
        if protocol == mqtt.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600
        connect = {"clean_start": False} if protocol == mqtt.MQTTv5 else {}
        self.client.connect(host, port, keepalive=30, properties=properties, **connect)
        self.client.loop_start()
        self.wait(lambda: self.connects > 0, "the first CONNACK")

    def _on_publish(self, client, userdata, mid, rc, props):
        with self.lock:
            self.acks += 1
            self.ack_times.append(time.monotonic())
            self.lock.notify_all()

    def _on_connect(self, client, userdata, flags, rc, props):
        with self.lock:
            if not rc.is_failure:
                self.connects += 1
                self.connect_times.append(time.monotonic())
            self.lock.notify_all()

    def _on_disconnect(self, client, userdata, flags, rc, props):
        with self.lock:
            self.disconnect_times.append(time.monotonic())
            self.lock.notify_all()

    def wait(self, predicate, what, timeout=DEADLINE):
        with self.lock:
            assert self.lock.wait_for(predicate, timeout), f"{self.client_id}: no {what} within {timeout}s"

    def start(self):
        self.running = True
        self.thread = threading.Thread(target=self._stream, daemon=True)
        self.thread.start()

    def _stream(self):
        pending = deque()
        seq = 0
        while self.running:
            while len(pending) >= self.window and self.running:
                with self.lock:  # the oldest reading unacknowledged: wait for an acknowledgement
                    self.lock.wait_for(lambda: acknowledged(pending[0]) or not self.running, 1)
                while pending and acknowledged(pending[0]):
                    pending.popleft()
            payload = f"{self.client_id}:{seq}".encode()
            info = self.client.publish(self.topic, payload, qos=self.qos)
            self.sent.append((payload, info))
            pending.append(info)
            seq += 1
            time.sleep(self.interval)  # the sampling rate of the device, not a wait for an event

    def progressed(self, count=5):
        """Waits for `count` more acknowledgements than now (the device is being served)."""
        with self.lock:
            target = self.acks + count
        self.wait(lambda: self.acks >= target, f"{count} more acknowledgements")

    def finish(self):
        """Stops sampling and waits until every reading sent is acknowledged."""
        self.running = False
        self.thread.join(DEADLINE)
        self.wait(lambda: all(acknowledged(info) for _, info in self.sent), "acknowledgement of every reading")

    def acked(self):
        return [p.decode() for p, info in self.sent if acknowledged(info)]

    def stop(self):
        self.running = False
        self.client.disconnect()
        self.client.loop_stop()


class Consumer:
    """A persistent subscriber (3.1.1, Clean Session 0) through the balancer: counts each
    payload it is handed."""

    def __init__(self, host, port, client_id, topic="readings/#", qos=2, packet_log=None):
        """`packet_log`: a file that receives paho's log of every packet (with the wall time)."""
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311, clean_session=False)
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.5)
        self.lock = threading.Condition()
        self.counts = {}
        self.repeats = []  # (wall time, payload, DUP flag, packet id, first arrival) of each copy after the first
        self.first = {}  # payload: (wall time, packet id) of its first copy
        self.awaited = set()  # what a wait_for still waits for (kept here: a scan of every payload per message would throttle paho's thread)
        self.subscribed = False
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.packet_log = open(packet_log, "a", buffering=1) if packet_log else None
        # QoS 2 packet ids the client holds unreleased (paho keeps them across reconnects), and
        # each PUBLISH the broker sent under one of them for another message: [MQTT-4.3.3]
        # lets a client drop it as a duplicate (paho keeps the new one and loses the first).
        self.held_ids = {}
        self.reused_ids = []  # (wall time, packet id, topic held, topic sent, DUP flag)
        self.client.on_log = self._on_log
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        self.client.subscribe(topic, qos=qos)
        with self.lock:
            assert self.lock.wait_for(lambda: self.subscribed, DEADLINE), "no SUBACK"

    PUBLISH_Q2 = re.compile(r"Received PUBLISH \(d(\d), q2, r\d, m(\d+)\), '([^']*)'")
    PUBREL = re.compile(r"Received PUBREL \(Mid: (\d+)\)")

    def _on_log(self, client, userdata, level, text):
        now = time.time()
        if self.packet_log:
            self.packet_log.write(f"{now:.3f} {text}\n")
        if match := self.PUBLISH_Q2.match(text):
            dup, mid, topic = match.groups()
            held = self.held_ids.get(mid)
            if held is not None and (dup == "0" or held != topic):
                self.reused_ids.append((now, int(mid), held, topic, dup == "1"))
            self.held_ids[mid] = topic
        elif match := self.PUBREL.match(text):
            self.held_ids.pop(match.group(1), None)

    def _on_subscribe(self, client, userdata, mid, rcs, props):
        with self.lock:
            self.subscribed = True
            self.lock.notify_all()

    def _on_message(self, client, userdata, message):
        with self.lock:
            key = message.payload.decode()
            self.counts[key] = self.counts.get(key, 0) + 1
            self.awaited.discard(key)
            if self.counts[key] > 1:
                self.repeats.append((time.time(), key, message.dup, message.mid, self.first.get(key)))
            else:
                self.first[key] = (time.time(), message.mid)
            self.lock.notify_all()

    def wait_for(self, payloads, timeout=DEADLINE, limit=15 * 60):
        """Waits until every payload of `payloads` arrived, for as long as they keep arriving
        (a backlog after a long run drains at its own pace): it gives up after `timeout`
        seconds in which none arrived, or after `limit`. Returns the ones that did not."""
        end = time.monotonic() + limit
        with self.lock:
            # The predicate runs at every message, holding the lock paho's network thread needs:
            # it must not scan the payloads (a scan of 500,000 held deliveries to ~85 a second).
            self.awaited = {p for p in payloads if p not in self.counts}
            while self.awaited and time.monotonic() < end:
                before = len(self.awaited)
                self.lock.wait_for(lambda: not self.awaited, min(timeout, max(0.0, end - time.monotonic())))
                if len(self.awaited) == before:
                    break  # nothing arrived for `timeout` seconds
            self.awaited = set()
            return [p for p in payloads if p not in self.counts]

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()
        if self.packet_log:
            self.packet_log.close()
