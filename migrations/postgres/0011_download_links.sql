-- The web console's download links (see migrations/sqlite/0013_download_links.sql).
CREATE TABLE download_links (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    project_id TEXT    NOT NULL,
    file_id    TEXT    NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX download_links_by_expiry ON download_links (expires_at);
