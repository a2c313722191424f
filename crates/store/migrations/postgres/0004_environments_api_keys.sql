-- Environments and scoped API keys (as migrations/sqlite/0006). Every integration, connection
-- and connect session belongs to one environment; what was there before is in `default`.
-- Integration ids repeat across environments: their key becomes (environment, id).

CREATE TABLE environments (
    id           TEXT PRIMARY KEY,
    webhook_url  TEXT,
    created_at   BIGINT NOT NULL
);

INSERT INTO environments (id, created_at)
    VALUES ('default', (extract(epoch FROM clock_timestamp()) * 1000000000)::BIGINT);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    environment   TEXT,
    scopes        TEXT NOT NULL,
    key_hash      TEXT NOT NULL UNIQUE,
    hint          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);

ALTER TABLE integrations ADD COLUMN environment TEXT NOT NULL DEFAULT 'default';
ALTER TABLE integrations DROP CONSTRAINT integrations_pkey;
ALTER TABLE integrations ADD PRIMARY KEY (environment, id);

ALTER TABLE connections ADD COLUMN environment TEXT NOT NULL DEFAULT 'default';
CREATE INDEX connections_environment ON connections (environment, created_at, id);
ALTER TABLE connect_sessions ADD COLUMN environment TEXT NOT NULL DEFAULT 'default';
