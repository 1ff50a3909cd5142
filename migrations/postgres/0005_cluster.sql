-- Cluster membership (docs/architecture.md, "Cluster"): one row per node, a lease renewed every second or
-- so and compared with the database's own clock (now()), never a node's. A node whose lease has
-- expired is dead. `incarnation` tells a restarted node from its previous process.

CREATE TABLE nodes (
    node_id         text PRIMARY KEY,
    incarnation     bigint NOT NULL,
    mqtt_address    text NOT NULL,
    cluster_address text NOT NULL,
    http_address    text,
    state           text NOT NULL DEFAULT 'alive',   -- alive | draining | left
    clients         integer NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL DEFAULT now(),
    renewed_at      timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz NOT NULL
);

-- Each session row belongs to the node its client is connected to (or was, last); a node
-- restores only its own. NULL: written by a node that runs alone.
ALTER TABLE sessions ADD COLUMN owner_node text;
CREATE INDEX sessions_owner_node ON sessions (owner_node);

-- Every node start takes the next value: ids a node generates (message ids, sequences) are
-- 2^62 + (value << 40) + a counter, so no two nodes, nor two starts of one node, ever collide
-- (nor with the wall-clock ids of a node that ran alone, all below 2^62).
CREATE SEQUENCE id_blocks;
