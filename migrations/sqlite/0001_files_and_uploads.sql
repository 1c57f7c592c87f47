-- Projects own keys, files and quota. quota_bytes NULL means the server's FILEGATE_PROJECT_QUOTA_BYTES.
CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    quota_bytes INTEGER,
    created_at  INTEGER NOT NULL
);

-- API keys are stored as the SHA-256 (hex) of the key, never in clear.
CREATE TABLE api_keys (
    key_hash   TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    label      TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

-- One row per file, whichever surface created it. Times are microseconds since the Unix epoch.
-- charged_bytes is what the file counts against its project's quota right now; quota usage is the sum
-- over unexpired rows, so it is exact by construction and released the moment a row goes away.
CREATE TABLE files (
    project_id    TEXT    NOT NULL REFERENCES projects (id),
    id            TEXT    NOT NULL,
    display_name  TEXT,
    mime_type     TEXT    NOT NULL,
    size_bytes    INTEGER,
    sha256        BLOB,
    state         TEXT    NOT NULL CHECK (state IN ('uploading', 'pending', 'processing', 'ready', 'failed')),
    origin        TEXT    NOT NULL CHECK (origin IN ('upload', 'import')),
    blob_key      TEXT    NOT NULL UNIQUE,
    charged_bytes INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    error_code    TEXT,
    error_message TEXT,
    PRIMARY KEY (project_id, id)
);
CREATE INDEX files_by_creation ON files (project_id, created_at DESC, id DESC);
CREATE INDEX files_by_expiry ON files (expires_at);

-- Resumable upload sessions, keyed by the SHA-256 of the upload token (the token itself is a capability
-- and is never stored). hasher_state is the serialized running SHA-256 of the received bytes. A session
-- finds its file by blob_key, which is unique per file generation: once a file is deleted and its name
-- reused, old sessions never see the new file.
CREATE TABLE upload_sessions (
    token_hash     TEXT    PRIMARY KEY,
    project_id     TEXT    NOT NULL,
    file_id        TEXT    NOT NULL,
    blob_key       TEXT    NOT NULL,
    declared_size  INTEGER,
    received_bytes INTEGER NOT NULL DEFAULT 0,
    status         TEXT    NOT NULL CHECK (status IN ('active', 'final', 'cancelled')),
    hasher_state   BLOB    NOT NULL,
    staging_key    TEXT    NOT NULL UNIQUE,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
);
CREATE INDEX upload_sessions_by_expiry ON upload_sessions (expires_at);
CREATE INDEX upload_sessions_by_blob ON upload_sessions (blob_key);

-- Every committed chunk with the hasher state after it: a resent chunk is proven identical by hashing it
-- from the state before it and comparing, so the hot path never hashes twice.
CREATE TABLE upload_chunks (
    token_hash   TEXT    NOT NULL REFERENCES upload_sessions (token_hash) ON DELETE CASCADE,
    offset_bytes INTEGER NOT NULL,
    length_bytes INTEGER NOT NULL,
    hasher_state BLOB    NOT NULL,
    PRIMARY KEY (token_hash, offset_bytes)
);

-- Blobs whose rows are gone but whose bytes may still be in the blob store. A row goes away and its blob
-- is queued here in one transaction; the blob is deleted afterwards, and the janitor retries what a crash
-- or an outage left behind. kind: 'object' (a finished file) or 'staging' (an open upload's bytes).
CREATE TABLE blob_garbage (
    blob_key  TEXT    PRIMARY KEY,
    kind      TEXT    NOT NULL CHECK (kind IN ('object', 'staging')),
    queued_at INTEGER NOT NULL
);
