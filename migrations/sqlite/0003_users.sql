-- Users for password authentication (docs/architecture.md, "Authentication"), managed with `starling ctl users`.
-- password_hash is a PHC string: $pbkdf2-sha512$i=ROUNDS$SALT$HASH (salt and hash in base64);
-- no password is ever stored.

CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    updated_at    TEXT NOT NULL            -- UTC, 'YYYY-MM-DD HH:MM:SS'
);
