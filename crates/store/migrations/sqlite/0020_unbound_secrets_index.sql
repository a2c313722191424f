-- Start-up looks for connection credentials sealed before they were bound to their connection
-- (aad_version 1) to bind them. Without an index that is a scan of every secret: about 200 ms
-- with a million connections. The partial index holds only those rows, so it stays empty once
-- they are bound and costs nothing on writes.
CREATE INDEX secrets_unbound ON secrets (owner_kind) WHERE aad_version = 1;
