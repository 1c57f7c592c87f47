-- URL import tasks: one per imported file generation, deleted with its file (the file row is the task's
-- visible state: pending → processing → ready | failed). A task is claimable when it is unfinished, due
-- (next_attempt_at) and unleased or its lease ran out. received_bytes, hasher_state and validator describe
-- the bytes durably staged so far, so a retry or another node resumes from them.
CREATE TABLE import_tasks (
    blob_key        TEXT    PRIMARY KEY REFERENCES files (blob_key) ON DELETE CASCADE,
    project_id      TEXT    NOT NULL,
    file_id         TEXT    NOT NULL,
    source_url      TEXT    NOT NULL,
    model           TEXT    NOT NULL,
    expected_sha256 TEXT,
    staging_key     TEXT    NOT NULL UNIQUE,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    received_bytes  INTEGER NOT NULL DEFAULT 0,
    total_bytes     INTEGER,
    hasher_state    BLOB    NOT NULL,
    validator       TEXT,
    last_error      TEXT,
    finished_at     INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX import_tasks_due ON import_tasks (next_attempt_at) WHERE finished_at IS NULL;
CREATE INDEX import_tasks_by_project ON import_tasks (project_id) WHERE finished_at IS NULL;

-- Idempotency-Key → the task it created, for 24 hours. request_hash tells a retry of the same request
-- from a different request reusing the key.
CREATE TABLE import_idempotency (
    project_id      TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL,
    request_hash    TEXT    NOT NULL,
    blob_key        TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (project_id, idempotency_key)
);
