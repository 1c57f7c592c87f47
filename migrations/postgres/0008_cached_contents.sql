-- Context caches made through filegate (see migrations/sqlite/0010_cached_contents.sql).
CREATE TABLE cached_contents (
    id            TEXT   NOT NULL PRIMARY KEY,
    project_id    TEXT   NOT NULL,
    upstream_name TEXT   NOT NULL,
    model         TEXT   NOT NULL,
    view          TEXT   NOT NULL,
    copies        TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX cached_contents_by_project ON cached_contents (project_id, id);
CREATE INDEX cached_contents_by_expiry ON cached_contents (expires_at);

ALTER TABLE upstream_copies ADD COLUMN held_until BIGINT NOT NULL DEFAULT 0;
