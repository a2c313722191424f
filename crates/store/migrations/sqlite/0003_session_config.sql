-- Per-connection config chosen when a connect session is created (e.g. a subdomain the
-- authorization URL needs). Non-secret, JSON object of strings.
ALTER TABLE connect_sessions ADD COLUMN config TEXT NOT NULL DEFAULT '{}';
