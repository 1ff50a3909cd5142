-- While PostgreSQL cannot be reached, a node commits its batches to a local SQLite spool and
-- replays them here when it is back (README "SQLite fallback"). Each replayed transaction
-- records the last spool batch it applied, so a replay cut short (the node killed) resumes
-- after it instead of applying a batch twice.
CREATE TABLE spool_replays (
    spool_id    text PRIMARY KEY,
    through     bigint NOT NULL,
    node_id     text,
    replayed_at timestamptz NOT NULL DEFAULT now()
);

-- A replayed QoS 1 record is also a duplicate when it was received no later than the last
-- entry of its (client id, packet id) with the same content (IngestRecord.isDuplicate).
ALTER TABLE ingest_dedup ADD COLUMN replayed boolean NOT NULL DEFAULT false;
