-- The operation log: one row per auth flow step, refresh, health check, webhook delivery and
-- API request Latchkey made for a connection, with its outcome and timing. Never a body, a
-- query value or a header value. `created_at` is unix nanoseconds (UTC); rows are trimmed by
-- age and by a row cap. Lists read one environment, newest first, optionally by connection,
-- integration, kind or outcome.

CREATE TABLE operations (
    id TEXT PRIMARY KEY,
    environment TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    connection_id TEXT,
    integration TEXT,
    connector TEXT,
    upstream_status BIGINT,
    latency_us BIGINT NOT NULL,
    error_code TEXT,
    message TEXT,
    method TEXT,
    host TEXT,
    path TEXT
);
CREATE INDEX operations_recent ON operations (environment, created_at, id);
CREATE INDEX operations_by_connection ON operations (environment, connection_id, created_at, id);
CREATE INDEX operations_by_integration ON operations (environment, integration, created_at, id);
CREATE INDEX operations_by_outcome ON operations (environment, outcome, created_at, id);
CREATE INDEX operations_age ON operations (created_at);
