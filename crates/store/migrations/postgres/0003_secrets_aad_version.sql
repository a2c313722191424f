-- Which associated data a secret was sealed with: 1 = owner kind, id and field; 2 = those and
-- the digest of the connection's connector, integration, auth method and config (connection
-- credentials). Rows written before this column are 1; the store re-seals connection
-- credentials to 2 when it opens the database.
ALTER TABLE secrets ADD COLUMN aad_version BIGINT NOT NULL DEFAULT 1;
