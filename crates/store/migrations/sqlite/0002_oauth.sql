-- OAuth connect flows and cross-process locks. Timestamps are unix nanoseconds (UTC).
-- Tokens and states are stored as SHA-256 hashes; PKCE verifiers live sealed in `secrets`
-- (owner_kind 'oauth_state').

CREATE TABLE connect_sessions (
    id                TEXT PRIMARY KEY NOT NULL,
    token_hash        TEXT NOT NULL UNIQUE,
    integration       TEXT NOT NULL,
    connection_id     TEXT,
    end_user_id       TEXT,
    allowed_origin    TEXT,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'started', 'done', 'failed')),
    result_connection TEXT,
    error             TEXT,
    expires_at        INTEGER NOT NULL,
    created_at        INTEGER NOT NULL
) STRICT;

CREATE TABLE oauth_states (
    state_hash       TEXT PRIMARY KEY NOT NULL,
    connect_session  TEXT NOT NULL,
    browser_hash     TEXT,
    redirect_uri     TEXT NOT NULL,
    expires_at       INTEGER NOT NULL
) STRICT;

-- Leases for work that must happen once across processes (token refresh, session login).
CREATE TABLE locks (
    name        TEXT PRIMARY KEY NOT NULL,
    holder      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
