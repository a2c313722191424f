-- Back-off of the background refresher, kept with the connection so that every instance honours
-- it and the scheduler's query can leave out connections that wait: `refresh_failures` counts
-- consecutive failed scheduled refreshes, `refresh_retry_at` (unix nanoseconds, UTC) is the
-- earliest time the scheduler tries again. A stored renewal or a reconnect clears both.

ALTER TABLE connections ADD COLUMN refresh_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN refresh_retry_at BIGINT;
