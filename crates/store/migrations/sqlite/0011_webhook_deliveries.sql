-- Webhook secret rotation: the secret an environment's webhooks were signed with before the
-- last rotation stays valid (sealed in `secrets`, field `webhook_previous_secret`) until this
-- time; deliveries meanwhile carry both signatures.
ALTER TABLE environments ADD COLUMN webhook_previous_expires_at INTEGER;

-- The durable delivery log: one row per event sent to a webhook, which the deliverer claims,
-- sends and records. The id is the `webhook-id` header, the same on every attempt. The body is
-- the event's JSON, which holds no secret.
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY NOT NULL,
    environment      TEXT NOT NULL,
    event            TEXT NOT NULL,
    connection_id    TEXT,
    url              TEXT NOT NULL,      -- where it was (last) sent
    body             TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_status      INTEGER,            -- the HTTP status of the last answer, if one came
    last_error       TEXT,               -- why the last attempt failed, in safe words
    created_at       INTEGER NOT NULL,
    next_attempt_at  INTEGER,            -- pending: when it is due (a claim moves it on)
    delivered_at     INTEGER,
    updated_at       INTEGER NOT NULL
) STRICT;

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_environment
    ON webhook_deliveries (environment, created_at, id);
CREATE INDEX webhook_deliveries_by_status
    ON webhook_deliveries (environment, status, created_at, id);
CREATE INDEX webhook_deliveries_by_connection
    ON webhook_deliveries (environment, connection_id, created_at, id);
