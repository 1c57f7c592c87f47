-- Secrets replaced more than once within their 24-hour overlap: each keeps signing until its own end
-- (Google keeps every secret younger than 24 h after a rotation). `previous_secret` and `previous_until`
-- still hold the most recent replaced secret, so a node of the previous release signs as it did;
-- the older ones still live are here, as JSON: [["whsec_…", until_micros], …].
ALTER TABLE webhooks ADD COLUMN older_secrets TEXT;
ALTER TABLE project_signing_secrets ADD COLUMN older_secrets TEXT;
