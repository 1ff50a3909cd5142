-- Since when a node has held its lease without a gap (set when it claims its row or renews a
-- lease that had lapsed). A node is judged dead only by a node that has held its own lease
-- since before the dead node's ran out: after a database outage every lease has lapsed, and a
-- sweep that was waiting for a connection must not take the others for dead (the database
-- decides, not a node's memory of when it last renewed).
ALTER TABLE nodes ADD COLUMN held_since timestamptz;
UPDATE nodes SET held_since = started_at;
