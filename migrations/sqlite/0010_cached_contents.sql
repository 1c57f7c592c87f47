-- Context caches made through filegate (`services::model::caches`). The upstream (Vertex AI, the Gemini
-- API) holds the cache; this row says which project owns it, so that another project's name answers like a
-- missing one before any upstream call, and keeps the upstream's view of it (names rewritten) for lists.
-- `copies` lists the upstream copies of files the cache was made from ([blob_key, target] pairs), whose
-- `held_until` is kept at or past the cache's expiry.
CREATE TABLE cached_contents (
    id            TEXT    NOT NULL PRIMARY KEY,
    project_id    TEXT    NOT NULL,
    upstream_name TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    view          TEXT    NOT NULL,
    copies        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX cached_contents_by_project ON cached_contents (project_id, id);
CREATE INDEX cached_contents_by_expiry ON cached_contents (expires_at);

-- A copy a live cache was made from is not deleted before this time, even when its file is gone.
ALTER TABLE upstream_copies ADD COLUMN held_until INTEGER NOT NULL DEFAULT 0;
