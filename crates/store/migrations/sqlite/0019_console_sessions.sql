-- Operator console sessions: one row per signed-in browser, found by the SHA-256 (hex) of the
-- opaque session id its cookie holds (never the id itself). `actor_id`/`actor_name` are what
-- the audit log records for it: the API key it signed in with (`key_…`, `bootstrap`) or the
-- OpenID Connect subject (`oidc:…`). `environment` is the one the console shows; `bound`, when
-- set, is the only one it may show (a key bound to one environment). Times are unix
-- nanoseconds (UTC); a row past `expires_at` is dead and removed at the next sign-in.

CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    actor_id TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    environment TEXT NOT NULL,
    bound TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
