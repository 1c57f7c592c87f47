-- Copies of files made for a model upstream (see migrations/sqlite/0005_upstream_copies.sql).
CREATE TABLE upstream_copies (
    blob_key    TEXT   NOT NULL,
    target      TEXT   NOT NULL,
    project_id  TEXT   NOT NULL,
    uri         TEXT   NOT NULL,
    remote_name TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (blob_key, target)
);
CREATE INDEX upstream_copies_by_expiry ON upstream_copies (expires_at);
