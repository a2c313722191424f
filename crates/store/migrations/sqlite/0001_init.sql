-- Latchkey schema for SQLite. Timestamps are unix time in nanoseconds (UTC).
-- No column outside `secrets` and `keyring_check` holds secret material; those two hold only
-- AES-256-GCM ciphertexts sealed with associated data (owner_kind, owner_id, field).

CREATE TABLE integrations (
    id          TEXT PRIMARY KEY NOT NULL,
    connector   TEXT NOT NULL,
    client_id   TEXT,
    scopes      TEXT NOT NULL,          -- JSON array of strings
    settings    TEXT NOT NULL,          -- JSON value
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE connections (
    id           TEXT PRIMARY KEY NOT NULL,
    connector    TEXT NOT NULL,
    integration  TEXT,
    auth_method  TEXT NOT NULL,
    config       TEXT NOT NULL,         -- JSON object of strings
    status       TEXT NOT NULL CHECK (status IN ('ok', 'needs_reauth', 'error')),
    label        TEXT,
    end_user_id  TEXT,
    expires_at   INTEGER,
    version      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX connections_end_user_id ON connections (end_user_id);
CREATE INDEX connections_expires_at ON connections (expires_at);

CREATE TABLE custom_connectors (
    id          TEXT PRIMARY KEY NOT NULL,
    source      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

-- One row per secret field of an owner ('connection' or 'integration').
CREATE TABLE secrets (
    owner_kind   TEXT NOT NULL,
    owner_id     TEXT NOT NULL,
    field        TEXT NOT NULL,
    key_version  INTEGER NOT NULL,
    nonce        BLOB NOT NULL,
    ciphertext   BLOB NOT NULL,
    PRIMARY KEY (owner_kind, owner_id, field)
) STRICT;

-- A known value sealed with each key version, to detect a wrong master key at start-up.
CREATE TABLE keyring_check (
    key_version  INTEGER PRIMARY KEY NOT NULL,
    nonce        BLOB NOT NULL,
    ciphertext   BLOB NOT NULL
) STRICT;
