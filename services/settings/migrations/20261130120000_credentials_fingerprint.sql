-- Two shops on one WMS account: a keyed fingerprint (HMAC-SHA256 under a key derived from the
-- master key) of the endpoint URL and the access key, so an enabled shop on the same key and
-- endpoint is found without opening every stored key. NULL until computed (rows from before,
-- and after a re-seal): computed when needed, one key opened per row.
ALTER TABLE shop_settings ADD COLUMN credentials_fingerprint BYTEA;
CREATE INDEX shop_settings_enabled_fingerprint
    ON shop_settings (credentials_fingerprint) WHERE enabled;
