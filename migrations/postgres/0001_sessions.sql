-- Sessions, subscriptions, queued and in-flight messages, inbound QoS 2 state and retained
-- messages (docs/architecture.md, "Durability: the group commit"). Times are milliseconds since 1970 (UTC).

CREATE TABLE sessions (
    client_id        text PRIMARY KEY,
    protocol_version smallint NOT NULL,
    expiry_interval  bigint NOT NULL,           -- seconds; 4294967295 = never expires
    expires_at       bigint,                    -- while disconnected
    connected        boolean NOT NULL DEFAULT false,
    username         text,
    will_topic       text,
    will_payload     bytea,
    will_qos         smallint,
    will_retain      boolean,
    will_properties  bytea,
    will_due_at      bigint,
    updated_at       bigint NOT NULL
);

CREATE TABLE subscriptions (
    client_id           text NOT NULL REFERENCES sessions (client_id) ON DELETE CASCADE,
    filter              text NOT NULL,
    qos                 smallint NOT NULL,
    no_local            boolean NOT NULL,
    retain_as_published boolean NOT NULL,
    retain_handling     smallint NOT NULL,
    subscription_id     integer,
    PRIMARY KEY (client_id, filter)
);

CREATE TABLE message_payloads (
    id          bigint PRIMARY KEY,
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    qos         smallint NOT NULL,
    retain      boolean NOT NULL,
    properties  bytea,
    expires_at  bigint,
    publisher   text NOT NULL
);

CREATE TABLE session_messages (
    client_id        text NOT NULL REFERENCES sessions (client_id) ON DELETE CASCADE,
    seq              bigint NOT NULL,
    message_id       bigint NOT NULL,
    qos              smallint NOT NULL,
    retain           boolean NOT NULL,
    subscription_ids text,
    share_name       text,
    share_filter     text,
    state            smallint NOT NULL DEFAULT 0,  -- 0 queued, 1 sent, 2 released (PUBREL sent)
    packet_id        integer,
    PRIMARY KEY (client_id, seq)
);
CREATE INDEX session_messages_message_id ON session_messages (message_id);

-- QoS 2 packet ids whose PUBREC was sent and whose PUBREL is awaited. No foreign key: the
-- ingest bridge also keeps entries for clients whose sessions are not persistent.
CREATE TABLE inbound_qos2 (
    client_id   text NOT NULL,
    packet_id   integer NOT NULL,
    PRIMARY KEY (client_id, packet_id)
);

CREATE TABLE retained (
    topic       text PRIMARY KEY,
    payload     bytea NOT NULL,
    qos         smallint NOT NULL,
    properties  bytea,
    expires_at  bigint,
    publisher   text NOT NULL,
    message_id  bigint NOT NULL
);
