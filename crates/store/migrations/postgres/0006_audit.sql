-- The audit log: an append-only, hash-chained record of who did what to which object, when,
-- from where, in which environment, and the outcome. No column holds a secret: no request or
-- response bodies, no query or header values. `hash` is HMAC-SHA256 under the audit key (a
-- sealed row of `secrets`, owner_kind 'audit') of the previous entry's hash and this entry's
-- canonical encoding (see crates/store/src/audit.rs).
CREATE TABLE audit_log (
    seq          BIGINT PRIMARY KEY,             -- 1, 2, 3, … without gaps
    at           BIGINT NOT NULL,                -- unix nanoseconds, UTC
    actor_id     TEXT NOT NULL,                  -- API key id (`bootstrap`, …)
    actor_name   TEXT NOT NULL,
    action       TEXT NOT NULL,                  -- `connection.create`, …
    object_kind  TEXT,
    object_id    TEXT,
    environment  TEXT,
    address      TEXT,                           -- the caller's IP address
    outcome      TEXT NOT NULL,                  -- success | denied | failed
    status       BIGINT,                         -- the HTTP status answered
    hash         BYTEA NOT NULL
);

CREATE INDEX audit_log_at ON audit_log (at);

-- The chain's one head row: the last entry appended (seq 0 and 32 zero bytes before the
-- first), and the anchor a retention trim left (the sequence and hash of the last entry it
-- removed), where verification starts. Appenders lock it (`FOR UPDATE`), so two instances on
-- one database cannot fork the chain.
CREATE TABLE audit_head (
    id           BIGINT PRIMARY KEY CHECK (id = 1),
    seq          BIGINT NOT NULL,
    hash         BYTEA NOT NULL,
    anchor_seq   BIGINT NOT NULL,
    anchor_hash  BYTEA NOT NULL
);

INSERT INTO audit_head (id, seq, hash, anchor_seq, anchor_hash)
VALUES (1, 0, decode(repeat('00', 32), 'hex'), 0, decode(repeat('00', 32), 'hex'));
