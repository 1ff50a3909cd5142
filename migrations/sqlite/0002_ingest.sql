-- The ingest bridge (docs/architecture.md, "The ingest bridge"): one row per published message of an ingested topic.
-- received_at is UTC text, 'YYYY-MM-DD HH:MM:SS.SSS', which sorts in time order and works with
-- SQLite's date functions (strftime, datetime, julianday).

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    received_at     TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    username        TEXT,
    packet_id       INTEGER,                  -- NULL for QoS 0
    topic           TEXT NOT NULL,
    payload         BLOB NOT NULL,
    payload_json    TEXT,                     -- the payload when it is valid JSON
    qos             INTEGER NOT NULL,
    retain          INTEGER NOT NULL,
    content_type    TEXT,
    user_properties TEXT,                     -- JSON array of [name, value] pairs
    content_hash    BLOB NOT NULL,            -- SHA-256 of topic, 0x00, payload
    node_id         TEXT NOT NULL
);
CREATE INDEX messages_topic_received_at ON messages (topic, received_at);
CREATE INDEX messages_received_at ON messages (received_at);
CREATE INDEX messages_client_received_at ON messages (client_id, received_at);

-- The last entry per (client id, packet id) for QoS 1 de-duplication.
CREATE TABLE ingest_dedup (
    client_id    TEXT NOT NULL,
    packet_id    INTEGER NOT NULL,
    content_hash BLOB NOT NULL,
    last_dup     INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (client_id, packet_id)
);
