-- SCRAM-SHA-256 credentials for MQTT 5.0 enhanced authentication (RFC 7677):
-- $scram-sha256$i=ITERATIONS$SALT$STOREDKEY$SERVERKEY (base64). NULL for users created before
-- this column existed: they sign in with their password until it is set again.

ALTER TABLE users ADD COLUMN scram_sha256 TEXT;
