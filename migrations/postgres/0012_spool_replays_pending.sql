-- A node replaying its spool says so (`pending`, set when the replay starts and cleared when
-- the spool is empty): a claim of a session whose previous holder is still replaying waits for
-- that replay (at most 10 s), so what the holder ended while spooling (deliveries acknowledged
-- by the client) is in the store before the session is read and nothing is delivered twice.
ALTER TABLE spool_replays ADD COLUMN pending boolean NOT NULL DEFAULT false;
