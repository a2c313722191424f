-- Refresh failures classified into health.
-- `refresh_failing_since` (unix nanoseconds, UTC): when the current run of failed scheduled
-- refreshes began; after a configurable period the connection is `refresh_exhausted`. Cleared
-- with the back-off by a stored renewal or a reconnect.
-- An integration whose client the provider refuses (`invalid_client`, `unauthorized_client`) is
-- flagged once: `misconfigured_since` (first seen), `misconfigured_seen_at` (last seen, which
-- paces the probes while flagged) and a safe message. Writing the integration clears the flag.
-- `audit_log.detail`: what an action's outcome was beyond its status (a revocation's result).

ALTER TABLE connections ADD COLUMN refresh_failing_since BIGINT;
ALTER TABLE integrations ADD COLUMN misconfigured_since BIGINT;
ALTER TABLE integrations ADD COLUMN misconfigured_seen_at BIGINT;
ALTER TABLE integrations ADD COLUMN misconfigured_message TEXT;
ALTER TABLE audit_log ADD COLUMN detail TEXT;
