-- Connect links that say why they failed.
-- `error_code`: the stable code of the last failed attempt (`access_denied`, `token_refused`,
-- `flow_expired`, …) beside `error`, its safe message. A failed attempt may be followed by
-- another from the same link, which clears both.

ALTER TABLE connect_sessions ADD COLUMN error_code TEXT;
