-- Batch jobs submitted through filegate (see migrations/sqlite/0011_batches.sql).
CREATE TABLE batches (
    id               TEXT   NOT NULL PRIMARY KEY,
    project_id       TEXT   NOT NULL,
    upstream_name    TEXT   NOT NULL,
    model            TEXT   NOT NULL,
    display_name     TEXT,
    state            TEXT   NOT NULL,
    input_file       TEXT,
    output_file      TEXT,
    error            TEXT,
    collecting_until BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    end_time         BIGINT
);
CREATE INDEX batches_by_project ON batches (project_id, id);

-- Kept like SQLite's (an upload marked as generated), so that both engines read rows alike.
ALTER TABLE files ADD COLUMN generated BIGINT NOT NULL DEFAULT 0;
