-- Latchkey schema for PostgreSQL: the SQLite schema (migrations/sqlite 0001..0003) in one step.
-- Timestamps are unix time in nanoseconds (UTC) in BIGINT, as on SQLite: the records keep
-- nanoseconds, which TIMESTAMPTZ (microseconds) would round. JSON values are TEXT, written and
-- read by the same code as on SQLite.
-- No column outside `secrets` and `keyring_check` holds secret material; those two hold only
-- AES-256-GCM ciphertexts sealed with associated data (owner_kind, owner_id, field). Connect
-- tokens and OAuth states are stored as SHA-256 hashes.

CREATE TABLE integrations (
    id          TEXT PRIMARY KEY,
    connector   TEXT NOT NULL,
    client_id   TEXT,
    scopes      TEXT NOT NULL,          -- JSON array of strings
    settings    TEXT NOT NULL,          -- JSON value
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE connections (
    id           TEXT PRIMARY KEY,
    connector    TEXT NOT NULL,
    integration  TEXT,
    auth_method  TEXT NOT NULL,
    config       TEXT NOT NULL,         -- JSON object of strings
    status       TEXT NOT NULL CHECK (status IN ('ok', 'needs_reauth', 'error')),
    label        TEXT,
    end_user_id  TEXT,
    expires_at   BIGINT,
    version      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE INDEX connections_end_user_id ON connections (end_user_id);
CREATE INDEX connections_expires_at ON connections (expires_at);

CREATE TABLE custom_connectors (
    id          TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- One row per secret field of an owner ('connection', 'integration', 'script_storage',
-- 'oauth_state').
CREATE TABLE secrets (
    owner_kind   TEXT NOT NULL,
    owner_id     TEXT NOT NULL,
    field        TEXT NOT NULL,
    key_version  BIGINT NOT NULL,
    nonce        BYTEA NOT NULL,
    ciphertext   BYTEA NOT NULL,
    PRIMARY KEY (owner_kind, owner_id, field)
);

-- A known value sealed with each key version, to detect a wrong master key at start-up.
CREATE TABLE keyring_check (
    key_version  BIGINT PRIMARY KEY,
    nonce        BYTEA NOT NULL,
    ciphertext   BYTEA NOT NULL
);

CREATE TABLE connect_sessions (
    id                TEXT PRIMARY KEY,
    token_hash        TEXT NOT NULL UNIQUE,
    integration       TEXT NOT NULL,
    connection_id     TEXT,
    end_user_id       TEXT,
    allowed_origin    TEXT,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'started', 'done', 'failed')),
    result_connection TEXT,
    error             TEXT,
    expires_at        BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    -- Per-connection config chosen when the session is created. Non-secret, JSON object.
    config            TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE oauth_states (
    state_hash       TEXT PRIMARY KEY,
    connect_session  TEXT NOT NULL,
    browser_hash     TEXT,
    redirect_uri     TEXT NOT NULL,
    expires_at       BIGINT NOT NULL
);

-- Leases for work that must happen once across processes (token refresh, session login).
-- `expires_at` comes from the database's clock, so instances with skewed clocks agree.
CREATE TABLE locks (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
