-- A delivery that ended (acknowledged, dropped, expired) before its row arrived: the node that
-- published the message committed the row to its spool during an outage, and the replay brings
-- it after the node holding the session deleted it (or the two commit at once). The delete then
-- leaves the row in place as ended (state 3, `ended_at` set), which keeps the late row out: the
-- primary key makes the two writes meet whatever their order, so the message is never delivered
-- to that session twice (QoS 2: exactly once). Ended rows are read by nobody and collected after
-- a day (garbage collection).
ALTER TABLE session_messages ADD COLUMN ended_at timestamptz;
CREATE INDEX session_messages_ended ON session_messages (ended_at) WHERE state = 3;
