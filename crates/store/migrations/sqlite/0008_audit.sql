-- The audit log: an append-only, hash-chained record of who did what to which object, when,
-- from where, in which environment, and the outcome. No column holds a secret: no request or
-- response bodies, no query or header values. `hash` is HMAC-SHA256 under the audit key (a
-- sealed row of `secrets`, owner_kind 'audit') of the previous entry's hash and this entry's
-- canonical encoding (see crates/store/src/audit.rs).
CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY NOT NULL,   -- 1, 2, 3, … without gaps
    at           INTEGER NOT NULL,               -- unix nanoseconds, UTC
    actor_id     TEXT NOT NULL,                  -- API key id (`bootstrap`, …)
    actor_name   TEXT NOT NULL,
    action       TEXT NOT NULL,                  -- `connection.create`, …
    object_kind  TEXT,
    object_id    TEXT,
    environment  TEXT,
    address      TEXT,                           -- the caller's IP address
    outcome      TEXT NOT NULL,                  -- success | denied | failed
    status       INTEGER,                        -- the HTTP status answered
    hash         BLOB NOT NULL
) STRICT;

CREATE INDEX audit_log_at ON audit_log (at);

-- The chain's one head row: the last entry appended (seq 0 and 32 zero bytes before the
-- first), and the anchor a retention trim left (the sequence and hash of the last entry it
-- removed), where verification starts. Appenders lock it, so the chain cannot fork.
CREATE TABLE audit_head (
    id           INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq          INTEGER NOT NULL,
    hash         BLOB NOT NULL,
    anchor_seq   INTEGER NOT NULL,
    anchor_hash  BLOB NOT NULL
) STRICT;

INSERT INTO audit_head (id, seq, hash, anchor_seq, anchor_hash)
VALUES (1, 0, zeroblob(32), 0, zeroblob(32));
