-- When a key was last accepted (see migrations/sqlite/0006_key_last_used.sql).
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
