-- Copies of files made so that a model upstream can read them: a file copied to the Vertex staging bucket
-- (`gs://…`), or uploaded to the Gemini API's Files API (its `https://…/files/…` uri). Keyed by the file's
-- blob key, which names one generation of one file for good, so a name deleted and reused never meets its
-- predecessor's copy. A copy whose file is gone, or that expired, is deleted upstream by the sweeper and
-- then here.
CREATE TABLE upstream_copies (
    blob_key    TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    project_id  TEXT    NOT NULL,
    uri         TEXT    NOT NULL,
    remote_name TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (blob_key, target)
);
CREATE INDEX upstream_copies_by_expiry ON upstream_copies (expires_at);
