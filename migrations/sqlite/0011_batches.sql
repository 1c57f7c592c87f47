-- Batch jobs submitted through filegate (`services::batches`). The upstream runs the job; this row says
-- which project owns it, its state as last seen (in the Gemini API's spelling, whichever upstream runs it),
-- and the filegate file its results became. `collecting_until` is the lease of the node copying the
-- results into that file, so that two nodes never collect one job twice.
CREATE TABLE batches (
    id               TEXT    NOT NULL PRIMARY KEY,
    project_id       TEXT    NOT NULL,
    upstream_name    TEXT    NOT NULL,
    model            TEXT    NOT NULL,
    display_name     TEXT,
    state            TEXT    NOT NULL,
    input_file       TEXT,
    output_file      TEXT,
    error            TEXT,
    collecting_until INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    end_time         INTEGER
);
CREATE INDEX batches_by_project ON batches (project_id, id);

-- Files filegate made itself (a batch's results). `origin`'s CHECK predates them and cannot change in
-- SQLite without rebuilding `files`, from which other tables cascade: they are stored as uploads, marked here.
ALTER TABLE files ADD COLUMN generated INTEGER NOT NULL DEFAULT 0;
