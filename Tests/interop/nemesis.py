"""The nemesis (README "What the cluster promises under faults"): a cluster behind HAProxy
(deploy/haproxy.cfg) on one PostgreSQL, devices streaming readings through it, persistent
subscribers, and a schedule of faults generated from a seed — kills, freezes shorter and longer
than the lease, one node cut from PostgreSQL, every node cut (an outage), PostgreSQL dropping
every connection and refusing for a while (a restart), the links between nodes cut while all
reach PostgreSQL, the whole cluster restarted, and combinations (a kill during the replay after
an outage, a freeze while a node is cut off). Then the checker: every acknowledged reading
exactly once in `messages`, no reading stored twice, every acknowledged QoS 1 reading at each
persistent subscriber, every QoS 2 reading there exactly once, every spool drained; and, per
fault kind, the longest pause a device saw.

Every node reaches PostgreSQL through a proxy of its own (`netproxy.Proxy`), and peers reach a
node's cluster listener through another (its advertised address), so a fault is a cut of
sockets, as the network would make it. The history is each device's sends and acknowledgements.

Run by test_nemesis.py (a short schedule in CI) and by bench/nemesis (10 minutes, 40 faults and
more):  python3 Tests/interop/nemesis.py --seed 7 --duration 600 --nodes 3
The same checker over the SQLite fallback alone (one node on PostgreSQL and its spool, store
outages and kills):  python3 Tests/interop/nemesis.py --single --duration 120
"""
import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
import urllib.parse
import uuid

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import ADMIN_TOKEN, SECRET, postgres_url, query  # noqa: E402
from conftest import Broker  # noqa: E402
from failover import DEADLINE, Balancer, Consumer, Device, free_port  # noqa: E402
from netproxy import Proxy  # noqa: E402

LEASE = 5.0  # cluster.lease_timeout (the default)
KINDS = ("kill", "freeze_short", "freeze_long", "cut_one", "outage", "db_restart", "links_all", "links_one",
         "cluster_restart", "outage_then_kill", "cut_then_freeze")
# One node on PostgreSQL with its SQLite spool, no cluster (`--single`): the fallback alone.
SINGLE_KINDS = ("kill", "outage", "db_restart", "outage_then_kill")


class NemesisCluster:
    """Nodes n1..nN, each with a working directory that outlives its process (its spool), a
    proxy to PostgreSQL and a proxy in front of its cluster listener."""

    def __init__(self, size, extra_env=None, keep_logs=None, cluster=True):
        """`keep_logs`: a directory that receives every node incarnation's log. `cluster`
        false: one node without `--cluster` (PostgreSQL and its spool only)."""
        self.keep_logs = keep_logs
        self.clustered = cluster
        self.incarnations = {}
        self.schema = f"nem_{uuid.uuid4().hex[:12]}"
        url = urllib.parse.urlsplit(postgres_url(self.schema))
        self.base_url = postgres_url(self.schema)
        self.dir = tempfile.TemporaryDirectory(prefix="starling-nemesis-")
        self.extra_env = extra_env or {}
        self.nodes, self.db, self.links, self.cluster_ports, self.workdirs = {}, {}, {}, {}, {}
        for i in range(1, size + 1):
            node_id = f"n{i}"
            self.db[node_id] = Proxy(url.hostname, url.port)
            self.cluster_ports[node_id] = free_port()
            self.links[node_id] = Proxy("127.0.0.1", self.cluster_ports[node_id])
            self.workdirs[node_id] = os.path.join(self.dir.name, node_id)
            os.makedirs(self.workdirs[node_id])
        self.db_host = f"{url.hostname}:{url.port}"
        for node_id in self.db:
            self.start(node_id)

    def url(self, node_id):
        return self.base_url.replace(self.db_host, f"127.0.0.1:{self.db[node_id].port}")

    def start(self, node_id):
        env = {"STARLING_CLUSTER_SECRET": SECRET, "STARLING_HTTP_ADMIN_TOKEN": ADMIN_TOKEN,
               "STARLING_CLUSTER_ADVERTISE": f"127.0.0.1:{self.links[node_id].port}", **self.extra_env}
        cluster_args = ("--node-id", node_id, "--cluster", f"127.0.0.1:{self.cluster_ports[node_id]}") if self.clustered else ()
        node = Broker(extra_args=("--postgres", self.url(node_id), *cluster_args),
                      env=env, http=True, schemes=("mqtt", "cluster") if self.clustered else ("mqtt",), workdir=self.workdirs[node_id])
        node.node_id = node_id
        old = self.nodes.get(node_id)
        if old is not None:
            self.retire(node_id, old)
        self.nodes[node_id] = node
        return node

    def retire(self, node_id, node):
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGCONT)
        if self.keep_logs:
            count = self.incarnations[node_id] = self.incarnations.get(node_id, 0) + 1
            os.makedirs(self.keep_logs, exist_ok=True)
            with open(os.path.join(self.keep_logs, f"{node_id}.{count}.log"), "w") as out:
                out.write(node.log())
        node.stop()

    def __getitem__(self, node_id):
        return self.nodes[node_id]

    def alive(self, node_id):
        return self.nodes[node_id].process.poll() is None

    def signal(self, node_id, sig):
        self.nodes[node_id].process.send_signal(sig)

    def metrics(self, node_id):
        status, body = self.nodes[node_id].get("/metrics")
        values = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def ready(self, node_id):
        try:
            return self.nodes[node_id].get("/readyz")[0] == 200
        except OSError:
            return False

    def query(self, sql):
        return query(self.schema, sql)

    def audit(self, client_id):
        """Records, with the writing connection's `application_name` and the time, every queue row
        inserted for `client_id`, every stored payload, every ingest row, every QoS 2 entry made or
        removed and every de-duplication entry written (long runs with their logs kept): a repeat
        at a subscriber then shows which node wrote what of it, live or replayed (`node_of`)."""
        schema = self.schema
        app = "current_setting('application_name')"
        self.query(f"""
            CREATE TABLE {schema}.nem_audit (kind text, key bigint, message_id bigint, payload text, client text, packet int,
                                            app text, at timestamptz DEFAULT clock_timestamp());
            CREATE FUNCTION {schema}.nem_audit_queue() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                IF NEW.client_id = '{client_id}' THEN
                    INSERT INTO {schema}.nem_audit (kind, key, message_id, app) VALUES ('queue', NEW.seq, NEW.message_id, {app});
                END IF;
                RETURN NULL; END $$;
            CREATE TRIGGER nem_audit_queue AFTER INSERT ON {schema}.session_messages
                FOR EACH ROW EXECUTE FUNCTION {schema}.nem_audit_queue();
            CREATE FUNCTION {schema}.nem_audit_payload() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                INSERT INTO {schema}.nem_audit (kind, key, message_id, payload, client, app)
                VALUES ('payload', NEW.id, NEW.id, encode(NEW.payload, 'escape'), NEW.publisher, {app});
                RETURN NULL; END $$;
            CREATE TRIGGER nem_audit_payload AFTER INSERT ON {schema}.message_payloads
                FOR EACH ROW EXECUTE FUNCTION {schema}.nem_audit_payload();
            CREATE FUNCTION {schema}.nem_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                INSERT INTO {schema}.nem_audit (kind, key, payload, client, packet, app)
                VALUES ('row', NEW.id, encode(NEW.payload, 'escape'), NEW.client_id, NEW.packet_id, {app});
                RETURN NULL; END $$;
            CREATE TRIGGER nem_audit_row AFTER INSERT ON {schema}.messages FOR EACH ROW EXECUTE FUNCTION {schema}.nem_audit_row();
            CREATE FUNCTION {schema}.nem_audit_entry() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                IF TG_OP = 'INSERT' THEN
                    INSERT INTO {schema}.nem_audit (kind, client, packet, app) VALUES ('entry+', NEW.client_id, NEW.packet_id, {app});
                ELSE
                    INSERT INTO {schema}.nem_audit (kind, client, packet, app) VALUES ('entry-', OLD.client_id, OLD.packet_id, {app});
                END IF;
                RETURN NULL; END $$;
            CREATE TRIGGER nem_audit_entry AFTER INSERT OR DELETE ON {schema}.inbound_qos2
                FOR EACH ROW EXECUTE FUNCTION {schema}.nem_audit_entry();
            CREATE FUNCTION {schema}.nem_audit_dedup() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                INSERT INTO {schema}.nem_audit (kind, key, payload, client, packet, app)
                VALUES ('dedup ' || lower(TG_OP), NEW.received_at, encode(NEW.content_hash, 'hex'), NEW.client_id, NEW.packet_id, {app});
                RETURN NULL; END $$;
            CREATE TRIGGER nem_audit_dedup AFTER INSERT OR UPDATE ON {schema}.ingest_dedup
                FOR EACH ROW EXECUTE FUNCTION {schema}.nem_audit_dedup();
            """)

    def node_of(self, application_name):
        """The node whose connection carried `application_name` (its spool's tag, with "/replay"
        on the replay's line)."""
        import sqlite3
        if not hasattr(self, "spool_tags"):
            self.spool_tags = {}  # a node's spool (its data directory's) keeps its id across restarts
        for node_id, workdir in self.workdirs.items():
            if node_id in self.spool_tags:
                continue
            try:
                with sqlite3.connect(f"file:{os.path.join(workdir, 'data', 'spool.db')}?mode=ro", uri=True) as db:
                    row = db.execute("SELECT value FROM spool_meta WHERE key = 'id'").fetchone()
            except sqlite3.Error:
                continue
            if row:
                self.spool_tags[node_id] = "starling/" + row[0][:48]
        for node_id, tag in self.spool_tags.items():
            if application_name.startswith(tag):
                return node_id + (" replay" if application_name.endswith("/replay") else "")
        return application_name

    def stop(self):
        for node_id, node in self.nodes.items():
            self.retire(node_id, node)
        for proxy in (*self.db.values(), *self.links.values()):
            proxy.close()
        self.dir.cleanup()


def schedule(seed, count, kinds=KINDS, nodes=3):
    """The faults of a run, from `seed`: every kind once (in a seeded order) while `count`
    allows, then kinds drawn at random; each with its target and duration."""
    rng = random.Random(seed)
    order = list(kinds)
    rng.shuffle(order)
    while len(order) < count:
        order.append(rng.choice(kinds))
    faults = []
    for kind in order[:count]:
        target = f"n{rng.randint(1, nodes)}"
        duration = {"freeze_short": rng.uniform(2.0, LEASE - 1.5), "freeze_long": rng.uniform(LEASE + 1.0, LEASE + 3.0),
                    "cut_one": rng.uniform(5.0, 9.0), "outage": rng.uniform(5.0, 10.0), "db_restart": rng.uniform(2.0, 5.0),
                    "links_all": rng.uniform(5.0, 9.0), "links_one": rng.uniform(5.0, 9.0),
                    "outage_then_kill": rng.uniform(5.0, 10.0), "cut_then_freeze": rng.uniform(4.0, 7.0)}.get(kind, 0.0)
        faults.append({"kind": kind, "node": target, "seconds": round(duration, 2), "quiet": round(rng.uniform(2.0, 4.0), 2)})
    return faults


class Nemesis:
    def __init__(self, nodes=3, devices=6, interval=0.02, log=print, keep_logs=None, single=False):
        """`single`: one node without a cluster (the SQLite fallback alone; `SINGLE_KINDS`)."""
        self.log = log
        self.cluster = NemesisCluster(1 if single else nodes, keep_logs=keep_logs, cluster=not single, extra_env={
            "STARLING_MQTT_PROXY_PROTOCOL": "true",  # deploy/haproxy.cfg sends PROXY v2
            "STARLING_SERVER_DRAIN_WAIT": "0",
            # A subscriber away for a minute at the long runs' rate must not meet its queue limit
            # (mqtt.max_queued_messages drops by policy, which is not what is checked here).
            "STARLING_MQTT_MAX_QUEUED_MESSAGES": "1000000",
        })
        self.balancer = Balancer(self.cluster)
        self.balancer.wait_for({n: "UP" for n in self.cluster.nodes})
        self.wait_for_links()
        self.audited = bool(keep_logs)
        self.keep_logs = keep_logs
        if self.audited:
            self.cluster.audit("nem-sub-q2")
        host, port = self.balancer.host, self.balancer.port
        log = (lambda name: os.path.join(keep_logs, f"{name}.packets.log")) if keep_logs else (lambda name: None)
        if keep_logs:
            os.makedirs(keep_logs, exist_ok=True)
        self.qos1_subscriber = Consumer(host, port, "nem-sub-q1", topic="readings/#", qos=1, packet_log=log("sub-q1"))
        self.qos2_subscriber = Consumer(host, port, "nem-sub-q2", topic="readings/#", qos=2, packet_log=log("sub-q2"))
        kinds = [(mqtt.MQTTv311, 1), (mqtt.MQTTv5, 1), (mqtt.MQTTv311, 2), (mqtt.MQTTv5, 2)]
        self.devices = []
        for i in range(devices):
            protocol, qos = kinds[i % len(kinds)]
            self.devices.append(Device(host, port, f"nem-dev-{i}", protocol=protocol, qos=qos, interval=interval))
        self.events = []
        self.crashes = []  # nodes that died on their own (`revive_dead`)

    # MARK: waiting for the cluster to heal (events, not time)

    def wait(self, predicate, what, timeout=DEADLINE):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not within {timeout}s")
            time.sleep(0.1)  # the cluster's state has no notification: poll it

    def wait_for_links(self):
        live = [n for n in self.cluster.nodes if self.cluster.alive(n)]
        if not self.cluster.clustered:
            return

        def linked():
            for node_id in live:
                try:
                    import urllib.request
                    request = urllib.request.Request(f"http://127.0.0.1:{self.cluster[node_id].http_port}/api/v1/nodes",
                                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                    with urllib.request.urlopen(request, timeout=10) as response:
                        links = json.loads(response.read())["links"]
                except OSError:
                    return False
                up = {(link["peer"], link["direction"]) for link in links if link["up"]}
                if any((peer, d) not in up for peer in live if peer != node_id for d in ("inbound", "outbound")):
                    return False
            return True
        self.wait(linked, "every link up")

    def revive_dead(self):
        """A node that died on its own (not by a fault: those restart it at once) is counted
        as a crash, with its exit status and its log's last lines, and started again, as its
        supervisor would (systemd's Restart=always, Kubernetes)."""
        for node_id, node in list(self.cluster.nodes.items()):
            if node.process.poll() is None:
                continue
            tail = node.log()[-1500:]
            self.crashes.append({"node": node_id, "status": node.process.returncode,
                                 "wall": time.strftime("%H:%M:%S", time.gmtime()), "log_tail": tail})
            self.log(f"nemesis: {node_id} died on its own (status {node.process.returncode}); restarting it")
            self.restart(node_id)

    def healed(self):
        """Every node alive, ready, UP in HAProxy, linked, and off its spool."""
        try:
            def ready():
                self.revive_dead()
                return all(self.cluster.ready(n) for n in self.cluster.nodes)
            self.wait(ready, "every node ready")
        except AssertionError as error:
            said = {}
            for node_id, node in self.cluster.nodes.items():
                if node.process.poll() is not None:  # a node that died: how (a negative status is a signal)
                    said[node_id] = f"exited with status {node.process.returncode}"
                    continue
                try:
                    said[node_id] = node.get("/readyz")
                except OSError as failure:
                    said[node_id] = str(failure)
            tails = {n: node.log()[-3000:] for n, node in self.cluster.nodes.items()}
            raise AssertionError(f"{error}: {said}\n{tails}") from None
        self.balancer.wait_for({n: "UP" for n in self.cluster.nodes})
        self.wait_for_links()

    def restart(self, node_id, attempts=5):
        """Starts the node again; a start that fails is tried again, as its supervisor would
        (each failure is counted with the crashes)."""
        for attempt in range(attempts):
            try:
                self.cluster.start(node_id)
                break
            except RuntimeError as failure:
                if attempt == attempts - 1:
                    raise
                self.crashes.append({"node": node_id, "status": "did not start", "wall": time.strftime("%H:%M:%S", time.gmtime()),
                                     "log_tail": str(failure)[-1500:]})
                if self.cluster.keep_logs:  # the whole log of the failed start, beside the incarnations'
                    with open(os.path.join(self.cluster.keep_logs, f"{node_id}.failed-start.{len(self.crashes)}.log"), "w") as out:
                        out.write(str(failure))
                self.log(f"nemesis: {node_id} did not start; starting it again")
        self.balancer.repoint(node_id)

    # MARK: the faults

    def kill(self, node_id):
        self.cluster.signal(node_id, signal.SIGKILL)
        self.cluster[node_id].process.wait()
        self.restart(node_id)

    def freeze(self, node_id, seconds):
        self.cluster.signal(node_id, signal.SIGSTOP)
        time.sleep(seconds)  # the fault's length, by the schedule
        self.cluster.signal(node_id, signal.SIGCONT)

    def cut(self, proxies, seconds):
        for proxy in proxies:
            proxy.cut()
        time.sleep(seconds)  # the fault's length, by the schedule
        for proxy in proxies:
            proxy.restore()

    def inject(self, fault):
        kind, node, seconds = fault["kind"], fault["node"], fault["seconds"]
        db, links = self.cluster.db, self.cluster.links
        if kind == "kill":
            self.kill(node)
        elif kind in ("freeze_short", "freeze_long"):
            self.freeze(node, seconds)
        elif kind == "cut_one":
            self.cut([db[node]], seconds)
        elif kind in ("outage", "db_restart"):
            self.cut(list(db.values()), seconds)
        elif kind == "links_all":
            self.cut(list(links.values()), seconds)
        elif kind == "links_one":
            self.cut([links[node]], seconds)
        elif kind == "cluster_restart":
            for node_id in self.cluster.nodes:
                self.cluster.signal(node_id, signal.SIGKILL)
            for node_id in self.cluster.nodes:
                self.cluster[node_id].process.wait()
                self.restart(node_id)
        elif kind == "outage_then_kill":
            # PostgreSQL back, then a node dies 3 s later, in the middle of its replay or after.
            self.cut(list(db.values()), seconds)
            time.sleep(3.0)  # by the schedule
            self.kill(node)
        elif kind == "cut_then_freeze":
            # A node cut off from PostgreSQL is frozen while its peers take its clients.
            db[node].cut()
            time.sleep(seconds / 2)  # by the schedule
            self.freeze(node, seconds / 2)
            db[node].restore()
        else:
            raise ValueError(f"unknown fault {kind}")

    # MARK: a run

    def run(self, faults, seed=None, duration=None):
        """Injects `faults` in order, each once the cluster has healed from the last (stopping
        after `duration` seconds if given), then checks the history."""
        self.log(f"nemesis: seed {seed}, up to {len(faults)} faults: " + ", ".join(f["kind"] + "@" + f["node"] for f in faults))
        for device in self.devices:
            device.start()
        for device in self.devices:
            device.progressed()
        began = time.monotonic()
        for fault in faults:
            if duration is not None and time.monotonic() - began > duration:
                break
            started = time.monotonic()
            self.inject(fault)
            injected = time.monotonic()
            self.healed()
            for device in self.devices:
                device.progressed(3)
            self.events.append({**fault, "start": started, "injected": injected, "healed": time.monotonic(),
                                "wall": time.strftime("%H:%M:%S", time.gmtime(time.time() - (time.monotonic() - started)))})
            self.log(f"nemesis: {fault['kind']}@{fault['node']} ({fault['seconds']} s) healed in {time.monotonic() - injected:.1f} s")
            time.sleep(fault["quiet"])  # the schedule's quiet time between faults
        return self.check()

    def check(self):
        for device in self.devices:
            device.finish()
        self.healed()
        spooled = {n: self.cluster.metrics(n).get("starling_spool_batches", 0) for n in self.cluster.nodes}
        self.wait(lambda: all(self.cluster.metrics(n).get("starling_spool_batches", 0) == 0 for n in self.cluster.nodes),
                  "every spool drained")
        acked = {p: d.qos for d in self.devices for p in d.acked()}
        sent = {p.decode() for d in self.devices for p, _ in d.sent}
        rows = {p: int(c) for p, c in self.cluster.query(
            "SELECT convert_from(payload, 'UTF8'), count(*) FROM messages WHERE topic LIKE 'readings/%' GROUP BY 1")}
        lost = sorted(p for p in acked if rows.get(p, 0) == 0)
        twice = sorted(p for p, c in rows.items() if c > 1)
        unknown = sorted(p for p in rows if p not in sent)
        gaps = {}
        for name, subscriber in (("qos1", self.qos1_subscriber), ("qos2", self.qos2_subscriber)):
            gaps[name] = subscriber.wait_for(list(acked), timeout=DEADLINE)
        with self.qos2_subscriber.lock:
            qos2_twice = sorted(p for p, q in acked.items() if q == 2 and self.qos2_subscriber.counts.get(p, 0) > 1)
        pauses, anatomy = {}, {}
        for event in self.events:
            for device in self.devices:
                gap, begin = self.longest_pause(device, event["start"], event["healed"], with_start=True)
                if gap > pauses.get(event["kind"], -1.0):
                    pauses[event["kind"]] = round(gap, 3)
                    anatomy[event["kind"]] = self.pause_anatomy(device, begin, gap, event)
        named = ",".join("'" + p + "'" for p in twice[:10]) or "''"
        details = self.cluster.query(
            "SELECT convert_from(payload, 'UTF8'), id, node_id, qos, packet_id, to_char(received_at, 'HH24:MI:SS.MS') FROM messages "
            f"WHERE convert_from(payload, 'UTF8') IN ({named}) ORDER BY 1, 2")
        repeats = [(t, p, first) for t, p, _, _, first in self.qos2_subscriber.repeats if acked.get(p) == 2][:5]
        result = {
            # Each QoS 2 repeat's surroundings: when its publisher disconnected and connected
            # again around the two copies (seconds from the first copy) and its rows.
            "qos2_repeat_context": [self.repeat_context(t, p, first) for t, p, first in repeats],
            "faults": len(self.events),
            "faults_by_kind": {k: sum(1 for e in self.events if e["kind"] == k) for k in sorted({e["kind"] for e in self.events})},
            "acknowledged": len(acked), "rows": sum(rows.values()), "lost": len(lost), "duplicate_rows": len(twice),
            "unknown_rows": len(unknown), "subscriber_gaps": {k: len(v) for k, v in gaps.items()}, "qos2_delivered_twice": len(qos2_twice),
            "qos2_ids_reused": len(self.qos2_subscriber.reused_ids),
            "spool_batches_at_end": spooled, "longest_pause_seconds": pauses,
            # For each kind's longest pause: seconds from the last acknowledgement before it to
            # the fault, to the device's disconnect, to its next CONNACK, and the pause's length.
            "longest_pause_anatomy": anatomy,
            # paho's own re-sends of released QoS 2 messages, kept back (failover.keep_pubrel_across_reconnects)
            "client_pubrel_replays_kept_back": sum(len(d.pubrel_replays) for d in self.devices),
            "node_crashes": [{k: v for k, v in c.items() if k != "log_tail"} for c in self.crashes],
            # Rows the audit recorded (queue rows of the QoS 2 subscriber, payloads): long runs only.
            "audited_rows": int(self.cluster.query("SELECT count(*) FROM nem_audit")[0][0]) if self.audited else None,
            "crash_log_tails": [c["log_tail"] for c in self.crashes],
            "examples": {"lost": lost[:5], "twice": twice[:5], "gaps": {k: v[:5] for k, v in gaps.items()}, "qos2_twice": qos2_twice[:5],
                         "twice_rows": details,
                         "qos2_ids_reused": [(self.wall(t), mid, held, topic, dup) for t, mid, held, topic, dup in self.qos2_subscriber.reused_ids[:10]],
                         "qos2_repeats": [(self.wall(t), p, dup, mid, self.wall(first[0]) if first else None, first[1] if first else None)
                                          for t, p, dup, mid, first in self.qos2_subscriber.repeats if acked.get(p) == 2][:20], "timeline": [(e["wall"], e["kind"], e["node"], e["seconds"]) for e in self.events]},
        }
        return result

    @staticmethod
    def moves(device, start, end, origin):
        """The device's disconnections and CONNACKs between the wall times `start` and `end`, in
        seconds from `origin`. The device's times are monotonic: compared on the wall clock."""
        if not device:
            return []
        offset = time.time() - time.monotonic()
        return sorted(((kind, round(t + offset - origin, 3))
                       for kind, times in (("disconnect", device.disconnect_times), ("connack", device.connect_times))
                       for t in times if start <= t + offset <= end),
                      key=lambda m: m[1])

    def repeat_context(self, second, payload, first):
        start = first[0] if first else second
        device = next((d for d in self.devices if d.client_id == payload.split(":")[0]), None)
        moves = self.moves(device, start - 5, second + 1, start)
        rows = self.cluster.query(
            "SELECT id, node_id, qos, packet_id, to_char(received_at, 'HH24:MI:SS.MS'), extract(epoch FROM received_at) "
            f"FROM messages WHERE convert_from(payload, 'UTF8') = '{payload}' ORDER BY id")
        # Around the reading's receipt too (a re-send after a move is routed where it lands).
        at = min((float(row[5]) for row in rows), default=None)
        around_receipt = self.moves(device, at - 10, at + 10, at) if at is not None else []
        # Its stored payloads (those garbage collection has not yet removed): two ids for one
        # reading mean it was routed twice, not one row delivered twice.
        payloads = self.cluster.query(
            f"SELECT id, publisher, qos FROM message_payloads WHERE convert_from(payload, 'UTF8') = '{payload}' ORDER BY id")
        context = {"reading": payload, "first": self.wall(start), "second": self.wall(second), "publisher": moves,
                   "publisher_around_receipt": around_receipt, "rows": rows, "payloads": payloads}
        if self.audited:
            # Every payload row of the reading and every queue row of the QoS 2 subscriber for
            # them, its ingest row, QoS 2 entries and de-duplication entries: which node wrote
            # each (live or replayed), and when.
            packet = rows[0][3] if rows else "0"
            publisher = payload.split(":")[0]
            written = self.cluster.query(
                "SELECT a.kind, a.key, a.message_id, a.client, a.packet, a.app, to_char(a.at, 'HH24:MI:SS.MS') FROM nem_audit a "
                f"WHERE a.message_id IN (SELECT message_id FROM nem_audit WHERE kind = 'payload' AND payload = '{payload}') "
                f"OR (a.client = '{publisher}' AND a.packet = {int(packet)}) ORDER BY a.at")
            context["written"] = [[kind, key, message_id, client, packet, self.cluster.node_of(app), at]
                                  for kind, key, message_id, client, packet, app, at in written]
            if self.keep_logs:
                # The publisher's neighbourhood (50 packet ids either side), for what the context leaves out.
                near = self.cluster.query(
                    "SELECT a.kind, a.key, a.message_id, a.payload, a.client, a.packet, a.app, to_char(a.at, 'HH24:MI:SS.MS') "
                    f"FROM nem_audit a WHERE (a.client = '{publisher}' AND a.packet BETWEEN {int(packet) - 50} AND {int(packet) + 50}) "
                    f"OR a.message_id IN (SELECT message_id FROM nem_audit WHERE kind = 'payload' AND client = '{publisher}' "
                    f"AND abs(CASE WHEN payload ~ '^{publisher}:[0-9]+$' THEN split_part(payload, ':', 2)::int END - {int(payload.split(':')[1])}) <= 50) "
                    "ORDER BY a.at")
                with open(os.path.join(self.keep_logs, f"repeat-{payload.replace(':', '-')}.tsv"), "w") as out:
                    for row in near:
                        out.write("\t".join([*row[:6], self.cluster.node_of(row[6]), row[7]]) + "\n")
        return context

    @staticmethod
    def wall(t):
        return time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}"

    @staticmethod
    def longest_pause(device, start, end, with_start=False):
        """The longest time the device went without an acknowledgement in [start, end] (and,
        `with_start`, when that pause began)."""
        with device.lock:
            times = [t for t in device.ack_times if start - 5 <= t <= end + 5]
        before = [t for t in times if t <= start]
        inside = [t for t in times if start < t <= end + 5]
        points = ([before[-1]] if before else [start]) + inside
        gap, begin = max(((b - a, a) for a, b in zip(points, points[1:])), default=(end - start, start))
        return (gap, begin) if with_start else gap

    @staticmethod
    def pause_anatomy(device, begin, gap, event):
        with device.lock:
            drops = [t for t in device.disconnect_times if begin <= t <= begin + gap]
            joins = [t for t in device.connect_times if begin <= t <= begin + gap]
        return {"device": device.client_id, "node": event["node"], "fault_at": round(event["start"] - begin, 3),
                "disconnected_at": round(drops[0] - begin, 3) if drops else None,
                "connected_at": round(joins[-1] - begin, 3) if joins else None,
                "reconnects": len(joins), "pause": round(gap, 3)}

    def stop(self):
        for device in self.devices:
            device.stop()
        for subscriber in (self.qos1_subscriber, self.qos2_subscriber):
            subscriber.stop()
        self.balancer.stop()
        self.cluster.stop()


def problems(result):
    """What the run broke of the contract (empty when it held)."""
    found = []
    for key in ("lost", "duplicate_rows", "unknown_rows", "qos2_delivered_twice", "qos2_ids_reused"):
        if result[key]:
            found.append(f"{key}: {result[key]}")
    for name, count in result["subscriber_gaps"].items():
        if count:
            found.append(f"subscriber {name} missed {count} acknowledged readings")
    for crash in result.get("node_crashes", []):
        found.append(f"{crash['node']} died on its own at {crash['wall']} (exit status {crash['status']})")
    return found


def main():
    parser = argparse.ArgumentParser(description="Fault schedules against a Starling cluster behind HAProxy (README: the nemesis).")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between two readings of a device")
    parser.add_argument("--duration", type=float, default=600, help="seconds of faults (the schedule is cut there)")
    parser.add_argument("--faults", type=int, default=500, help="most faults")
    parser.add_argument("--kinds", help="the fault kinds to draw from, comma-separated (default: every kind)")
    parser.add_argument("--single", action="store_true", help="one node without a cluster: the SQLite fallback alone")
    parser.add_argument("--keep-logs", help="a directory for every node incarnation's log")
    args = parser.parse_args()
    kinds = tuple(args.kinds.split(",")) if args.kinds else (SINGLE_KINDS if args.single else KINDS)
    faults = schedule(args.seed, args.faults, kinds=kinds, nodes=1 if args.single else args.nodes)
    nemesis = Nemesis(nodes=args.nodes, devices=args.devices, interval=args.interval, keep_logs=args.keep_logs, single=args.single)
    try:
        result = nemesis.run(faults, seed=args.seed, duration=args.duration)
    finally:
        nemesis.stop()
    result["seed"] = args.seed
    result["nodes"] = args.nodes
    print(json.dumps(result, indent=2))
    broken = problems(result)
    for problem in broken:
        print("BROKEN: " + problem)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
