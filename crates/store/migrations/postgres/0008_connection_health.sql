-- Each connection's health: the record as JSON (state, reason, last healthy and checked times,
-- last error), and its state alone in a column of its own for lists to filter on. Connections
-- stored before this were never checked here: `unknown`.
ALTER TABLE connections ADD COLUMN health TEXT NOT NULL DEFAULT '{"state":"unknown"}';
ALTER TABLE connections ADD COLUMN health_state TEXT NOT NULL DEFAULT 'unknown'
    CHECK (health_state IN ('healthy', 'unhealthy', 'unknown'));
CREATE INDEX connections_by_health ON connections (environment, health_state, created_at, id);
