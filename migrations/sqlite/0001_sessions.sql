-- Sessions, subscriptions, queued and in-flight messages, inbound QoS 2 state and retained
-- messages (docs/architecture.md, "Durability: the group commit"). Times are milliseconds since 1970 (UTC).

CREATE TABLE sessions (
    client_id        TEXT PRIMARY KEY,
    protocol_version INTEGER NOT NULL,
    expiry_interval  INTEGER NOT NULL,          -- seconds; 4294967295 = never expires
    expires_at       INTEGER,                   -- while disconnected
    connected        INTEGER NOT NULL DEFAULT 0,
    username         TEXT,
    will_topic       TEXT,
    will_payload     BLOB,
    will_qos         INTEGER,
    will_retain      INTEGER,
    will_properties  BLOB,
    will_due_at      INTEGER,
    updated_at       INTEGER NOT NULL
);

CREATE TABLE subscriptions (
    client_id           TEXT NOT NULL REFERENCES sessions (client_id) ON DELETE CASCADE,
    filter              TEXT NOT NULL,             -- as subscribed, $share/... included
    qos                 INTEGER NOT NULL,
    no_local            INTEGER NOT NULL,
    retain_as_published INTEGER NOT NULL,
    retain_handling     INTEGER NOT NULL,
    subscription_id     INTEGER,
    PRIMARY KEY (client_id, filter)
);

CREATE TABLE message_payloads (
    id          INTEGER PRIMARY KEY,
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    qos         INTEGER NOT NULL,
    retain      INTEGER NOT NULL,
    properties  BLOB,
    expires_at  INTEGER,
    publisher   TEXT NOT NULL
);

CREATE TABLE session_messages (
    client_id        TEXT NOT NULL REFERENCES sessions (client_id) ON DELETE CASCADE,
    seq              INTEGER NOT NULL,
    message_id       INTEGER NOT NULL,
    qos              INTEGER NOT NULL,
    retain           INTEGER NOT NULL,
    subscription_ids TEXT,
    share_name       TEXT,
    share_filter     TEXT,
    state            INTEGER NOT NULL DEFAULT 0,   -- 0 queued, 1 sent, 2 released (PUBREL sent)
    packet_id        INTEGER,
    PRIMARY KEY (client_id, seq)
);
CREATE INDEX session_messages_message_id ON session_messages (message_id);

-- QoS 2 packet ids whose PUBREC was sent and whose PUBREL is awaited. No foreign key: the
-- ingest bridge also keeps entries for clients whose sessions are not persistent.
CREATE TABLE inbound_qos2 (
    client_id   TEXT NOT NULL,
    packet_id   INTEGER NOT NULL,
    PRIMARY KEY (client_id, packet_id)
);

CREATE TABLE retained (
    topic       TEXT PRIMARY KEY,
    payload     BLOB NOT NULL,
    qos         INTEGER NOT NULL,
    properties  BLOB,
    expires_at  INTEGER,
    publisher   TEXT NOT NULL,
    message_id  INTEGER NOT NULL
);
