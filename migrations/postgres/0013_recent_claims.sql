-- The latest claims of a session (at most 8), as pairs: epoch, then when it was made
-- (milliseconds since 1970, by the database's clock). A spool replay leaves out what a
-- connection sent once any later claim than its own had been made before the node spooled it
-- (docs/architecture.md "Fencing"): the first claim after the connection's, which `claimed_at`
-- (the latest) no longer shows when the session moved on again since.
ALTER TABLE sessions ADD COLUMN recent_claims bigint[];
