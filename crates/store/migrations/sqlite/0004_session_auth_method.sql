-- The auth method a connect session connects with (NULL: the connector's first).
ALTER TABLE connect_sessions ADD COLUMN auth_method TEXT;
