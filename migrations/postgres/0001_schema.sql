-- filegate on PostgreSQL: the same tables as on SQLite (migrations/sqlite), in one step. Times are
-- microseconds since the Unix epoch (BIGINT), hashes and hasher states BYTEA. Every query of filegate is
-- written once for both engines (src/meta/sql), so the two schemas keep the same names and meanings.

-- Projects own keys, files and quota. quota_bytes NULL means the server's FILEGATE_PROJECT_QUOTA_BYTES.
-- The counters are kept by every transaction that changes them (under a lock on this row).
CREATE TABLE projects (
    id             TEXT PRIMARY KEY,
    quota_bytes    BIGINT,
    created_at     BIGINT NOT NULL,
    used_bytes     BIGINT NOT NULL DEFAULT 0,
    file_count     BIGINT NOT NULL DEFAULT 0,
    open_uploads   BIGINT NOT NULL DEFAULT 0,
    active_imports BIGINT NOT NULL DEFAULT 0
);

-- API keys are stored as the SHA-256 (hex) of the key, never in clear.
CREATE TABLE api_keys (
    key_hash   TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    label      TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE files (
    project_id    TEXT   NOT NULL REFERENCES projects (id),
    id            TEXT   NOT NULL,
    display_name  TEXT,
    mime_type     TEXT   NOT NULL,
    size_bytes    BIGINT,
    sha256        BYTEA,
    state         TEXT   NOT NULL CHECK (state IN ('uploading', 'pending', 'processing', 'ready', 'failed')),
    origin        TEXT   NOT NULL CHECK (origin IN ('upload', 'import')),
    blob_key      TEXT   NOT NULL UNIQUE,
    charged_bytes BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    error_code    TEXT,
    error_message TEXT,
    PRIMARY KEY (project_id, id)
);
CREATE INDEX files_by_creation ON files (project_id, created_at DESC, id DESC);
CREATE INDEX files_by_expiry ON files (expires_at);
CREATE INDEX files_by_project_expiry ON files (project_id, expires_at);

CREATE TABLE upload_sessions (
    token_hash     TEXT   PRIMARY KEY,
    project_id     TEXT   NOT NULL,
    file_id        TEXT   NOT NULL,
    blob_key       TEXT   NOT NULL,
    declared_size  BIGINT,
    received_bytes BIGINT NOT NULL DEFAULT 0,
    status         TEXT   NOT NULL CHECK (status IN ('active', 'final', 'cancelled')),
    hasher_state   BYTEA  NOT NULL,
    staging_key    TEXT   NOT NULL UNIQUE,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX upload_sessions_by_expiry ON upload_sessions (expires_at);
CREATE INDEX upload_sessions_by_blob ON upload_sessions (blob_key);

CREATE TABLE upload_chunks (
    token_hash   TEXT   NOT NULL REFERENCES upload_sessions (token_hash) ON DELETE CASCADE,
    offset_bytes BIGINT NOT NULL,
    length_bytes BIGINT NOT NULL,
    hasher_state BYTEA  NOT NULL,
    PRIMARY KEY (token_hash, offset_bytes)
);

CREATE TABLE blob_garbage (
    blob_key  TEXT   PRIMARY KEY,
    kind      TEXT   NOT NULL CHECK (kind IN ('object', 'staging')),
    queued_at BIGINT NOT NULL
);

CREATE TABLE import_tasks (
    blob_key        TEXT   PRIMARY KEY REFERENCES files (blob_key) ON DELETE CASCADE,
    project_id      TEXT   NOT NULL,
    file_id         TEXT   NOT NULL,
    source_url      TEXT   NOT NULL,
    model           TEXT   NOT NULL,
    expected_sha256 TEXT,
    staging_key     TEXT   NOT NULL UNIQUE,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    received_bytes  BIGINT NOT NULL DEFAULT 0,
    total_bytes     BIGINT,
    hasher_state    BYTEA  NOT NULL,
    validator       TEXT,
    last_error      TEXT,
    finished_at     BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX import_tasks_due ON import_tasks (next_attempt_at) WHERE finished_at IS NULL;
CREATE INDEX import_tasks_by_project ON import_tasks (project_id) WHERE finished_at IS NULL;

CREATE TABLE import_idempotency (
    project_id      TEXT   NOT NULL,
    idempotency_key TEXT   NOT NULL,
    request_hash    TEXT   NOT NULL,
    blob_key        TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (project_id, idempotency_key)
);

CREATE TABLE health_probe (
    id         BIGINT PRIMARY KEY,
    checked_at BIGINT NOT NULL
);
