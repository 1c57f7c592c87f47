-- Short-lived download links of the web console (`http/console`): the console holds the API key in the
-- tab and sends it as a header, which a browser's own download (streamed to disk, never into the page's
-- memory) cannot; it asks for a link instead. Stored by the SHA-256 of the token, so any node serves it.
CREATE TABLE download_links (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    project_id TEXT    NOT NULL,
    file_id    TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX download_links_by_expiry ON download_links (expires_at);
