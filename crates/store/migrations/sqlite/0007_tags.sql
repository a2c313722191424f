-- Tags, metadata and end users on connections and connect sessions, and the indexes that let
-- lists filter and page in SQL (keyset pagination on (created_at, id)).
--
-- A connection's tags are kept twice, written together in one transaction: as a JSON object in
-- `connections.tags` (read with the row) and one row per tag in `connection_tags` (filtered on:
-- each `tags[key]=value` of a list is an `id IN (SELECT connection_id … WHERE key AND value)`
-- through the (key, value, connection_id) index). `end_user_id` stays the end user's id.

ALTER TABLE connections ADD COLUMN end_user_email TEXT;
ALTER TABLE connections ADD COLUMN end_user_display_name TEXT;
ALTER TABLE connections ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';      -- JSON object of strings
ALTER TABLE connections ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';  -- JSON object

ALTER TABLE connect_sessions ADD COLUMN end_user_email TEXT;
ALTER TABLE connect_sessions ADD COLUMN end_user_display_name TEXT;
ALTER TABLE connect_sessions ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
ALTER TABLE connect_sessions ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';

CREATE TABLE connection_tags (
    connection_id  TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    key            TEXT NOT NULL,
    value          TEXT NOT NULL,
    PRIMARY KEY (connection_id, key)
) STRICT;
CREATE INDEX connection_tags_by_value ON connection_tags (key, value, connection_id);

-- One index per filter a list takes, each starting with the environment (every list is of one)
-- and ending in the page order; `connections_environment` (0006) serves the unfiltered list.
DROP INDEX connections_end_user_id;
CREATE INDEX connections_by_integration ON connections (environment, integration, created_at, id);
CREATE INDEX connections_by_integration_status ON connections (environment, integration, status, created_at, id);
CREATE INDEX connections_by_status ON connections (environment, status, created_at, id);
CREATE INDEX connections_by_end_user ON connections (environment, end_user_id, created_at, id);
CREATE INDEX integrations_page ON integrations (environment, created_at, id);
