-- Environments and scoped API keys. Every integration, connection and connect session belongs
-- to one environment; a fresh or older data directory has one, `default`, which holds what was
-- there before. Integration ids are chosen by people, so the same id may exist in several
-- environments: their key becomes (environment, id). Connection and connect-session ids stay
-- unique across environments.

CREATE TABLE environments (
    id           TEXT PRIMARY KEY NOT NULL,
    webhook_url  TEXT,                  -- this environment's webhook endpoint (its secret sealed)
    created_at   INTEGER NOT NULL
) STRICT;

INSERT INTO environments (id, created_at) VALUES ('default', unixepoch() * 1000000000);

-- An API key is stored as the SHA-256 of the key; the key itself is shown once.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    environment   TEXT,                 -- NULL: the key spans every environment
    scopes        TEXT NOT NULL,        -- JSON array of scope names
    key_hash      TEXT NOT NULL UNIQUE, -- hex SHA-256 of the key
    hint          TEXT NOT NULL,        -- the key's first characters, to recognise it
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    last_used_at  INTEGER,
    revoked_at    INTEGER
) STRICT;

CREATE TABLE integrations_by_environment (
    environment TEXT NOT NULL DEFAULT 'default',
    id          TEXT NOT NULL,
    connector   TEXT NOT NULL,
    client_id   TEXT,
    scopes      TEXT NOT NULL,
    settings    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (environment, id)
) STRICT;
INSERT INTO integrations_by_environment
    (environment, id, connector, client_id, scopes, settings, created_at, updated_at)
    SELECT 'default', id, connector, client_id, scopes, settings, created_at, updated_at
    FROM integrations;
DROP TABLE integrations;
ALTER TABLE integrations_by_environment RENAME TO integrations;

ALTER TABLE connections ADD COLUMN environment TEXT NOT NULL DEFAULT 'default';
CREATE INDEX connections_environment ON connections (environment, created_at, id);
ALTER TABLE connect_sessions ADD COLUMN environment TEXT NOT NULL DEFAULT 'default';
