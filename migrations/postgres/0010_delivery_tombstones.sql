-- A delivery that ended (acknowledged, dropped, expired) before its row arrived: the node that
-- published the message committed the row to its spool during an outage, and the replay brings
-- it after the node holding the session deleted it. The tombstone keeps the late row out, so
-- the message is never delivered to that session twice (QoS 2: exactly once). Tombstones are
-- collected after a day (garbage collection).
CREATE TABLE delivery_tombstones (
    client_id text NOT NULL,
    seq       bigint NOT NULL,
    ended_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, seq)
);
CREATE INDEX delivery_tombstones_ended_at ON delivery_tombstones (ended_at);
