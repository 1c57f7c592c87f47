-- Bucket stores: an upload or import stages its bytes as one multipart upload on the file's own key.
-- Its id and the ids of the parts stored so far live here, so that any node can add the next part or
-- complete the upload; a part is recorded in the same transaction as the offset it brings.
ALTER TABLE upload_sessions ADD COLUMN upload_id TEXT;
ALTER TABLE import_tasks ADD COLUMN upload_id TEXT;

CREATE TABLE blob_parts (
    staging_key TEXT    NOT NULL,
    part_index  INTEGER NOT NULL,
    part_id     TEXT    NOT NULL,
    PRIMARY KEY (staging_key, part_index)
);

-- One request at a time writes to an upload session, whichever node it reaches: `writer` is its claim,
-- `writer_until` when the claim lapses if that node dies.
ALTER TABLE upload_sessions ADD COLUMN writer TEXT;
ALTER TABLE upload_sessions ADD COLUMN writer_until INTEGER;

-- A staging area to abort names its multipart upload (dest_key, upload_id); a local one has neither.
ALTER TABLE blob_garbage ADD COLUMN dest_key TEXT;
ALTER TABLE blob_garbage ADD COLUMN upload_id TEXT;
