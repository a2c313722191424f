-- Scheduled health checks: when each connection's credential test is next due (unix
-- nanoseconds, UTC). 0 means not scheduled yet (a new or imported connection): the scheduler
-- gives it a random first time within one interval, so a bulk import is not checked all at
-- once. The index leaves out connections that wait for the user (`needs_reauth`), which are
-- never checked, so the scheduler's query reads only connections it may check, soonest first,
-- whatever their environment.
ALTER TABLE connections ADD COLUMN check_due_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX connections_check_due ON connections (check_due_at) WHERE status <> 'needs_reauth';

-- Refresh spreading: each connection's own share (parts per million) of the stretch before the
-- refresh margin in which the background refresher may renew it, fixed from its id when it is
-- stored, so connections whose tokens expire together are renewed spread over that stretch.
-- Rows stored before this keep 0: renewed at the margin, as before.
ALTER TABLE connections ADD COLUMN refresh_spread BIGINT NOT NULL DEFAULT 0;
