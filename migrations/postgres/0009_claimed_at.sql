-- When the latest claim of a session took it (milliseconds since 1970, by the database's
-- clock). A spool replay leaves out what a connection sent when a later claim of its session
-- was made before the node spooled it (docs/architecture.md "Fencing"): the node was frozen
-- or cut off, and its acknowledgement never reached the device, which re-sent elsewhere.
ALTER TABLE sessions ADD COLUMN claimed_at bigint;
