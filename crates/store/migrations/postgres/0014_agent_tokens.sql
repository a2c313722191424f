-- Agent tokens: short-lived, opaque tokens (`lk_agt_…`, stored as their SHA-256) that let an
-- AI agent use one connection through the proxy within grants (methods, path globs), until
-- `expires_at`, for at most `max_requests` requests (`used_requests` counts them), never seeing
-- the connection's credentials. Times are unix nanoseconds (UTC).

CREATE TABLE agent_tokens (
    id TEXT PRIMARY KEY,
    environment TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    connection_id TEXT NOT NULL,
    name TEXT NOT NULL,
    methods TEXT NOT NULL,
    paths TEXT NOT NULL,
    max_requests BIGINT,
    used_requests BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX agent_tokens_by_environment ON agent_tokens (environment, created_at, id);
