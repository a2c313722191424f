-- Change notifications for a fleet: every instance LISTENs on `latchkey_changes` and drops what
-- it cached about a row another instance (or any other writer) changed, within milliseconds
-- instead of a cache lifetime. Channels are database-wide, so the payload starts with the schema
-- and a listener ignores other schemas' changes. Payload: `<schema> <kind> <id>`.
-- New connections notify nothing (nothing can be cached about a row that did not exist);
-- identical payloads in one transaction are delivered once (PostgreSQL folds them).

CREATE FUNCTION latchkey_notify_connection() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('latchkey_changes', current_schema() || ' connection ' || OLD.id);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER connections_changed AFTER UPDATE OR DELETE ON connections
    FOR EACH ROW EXECUTE FUNCTION latchkey_notify_connection();

-- A connection's credentials live in `secrets`; a write that only reseals them (key rotation)
-- still changes what a cache holds.
CREATE FUNCTION latchkey_notify_connection_secret() RETURNS trigger AS $$
BEGIN
    IF OLD.owner_kind = 'connection' THEN
        PERFORM pg_notify('latchkey_changes', current_schema() || ' connection ' || OLD.owner_id);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER connection_secrets_changed AFTER UPDATE OR DELETE ON secrets
    FOR EACH ROW EXECUTE FUNCTION latchkey_notify_connection_secret();

-- API keys are cached by digest; a change to what a key may do (revocation, expiry, scopes,
-- deletion) drops them all. Recording a key's last use changes nothing cached.
CREATE FUNCTION latchkey_notify_api_keys() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('latchkey_changes', current_schema() || ' api_keys -');
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER api_keys_changed AFTER UPDATE ON api_keys
    FOR EACH ROW WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
        OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
        OR OLD.scopes IS DISTINCT FROM NEW.scopes
        OR OLD.environment IS DISTINCT FROM NEW.environment)
    EXECUTE FUNCTION latchkey_notify_api_keys();

CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION latchkey_notify_api_keys();
