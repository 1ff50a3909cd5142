-- Users for password authentication (docs/architecture.md, "Authentication"), managed with `starling ctl users`.
-- password_hash is a PHC string: $pbkdf2-sha512$i=ROUNDS$SALT$HASH (salt and hash in base64);
-- no password is ever stored. Every node of a cluster reads the same table.

CREATE TABLE users (
    username      text PRIMARY KEY,
    password_hash text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
