-- When a key was last accepted (microseconds), for `filegate keys list`. Written at most once a minute per
-- key and node, so that authenticating stays a read.
ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;
