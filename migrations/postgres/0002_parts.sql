-- Bucket stores: multipart upload ids and part ids (see migrations/sqlite/0004_parts.sql).
ALTER TABLE upload_sessions ADD COLUMN upload_id TEXT;
ALTER TABLE import_tasks ADD COLUMN upload_id TEXT;

CREATE TABLE blob_parts (
    staging_key TEXT   NOT NULL,
    part_index  BIGINT NOT NULL,
    part_id     TEXT   NOT NULL,
    PRIMARY KEY (staging_key, part_index)
);

ALTER TABLE upload_sessions ADD COLUMN writer TEXT;
ALTER TABLE upload_sessions ADD COLUMN writer_until BIGINT;

ALTER TABLE blob_garbage ADD COLUMN dest_key TEXT;
ALTER TABLE blob_garbage ADD COLUMN upload_id TEXT;
