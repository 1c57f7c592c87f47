-- Per-project counters, kept by every transaction that changes them, so that admission checks (quota,
-- file and session limits, imports in flight) cost the same with a million files as with none.
-- `filegate usage --recompute` rebuilds them from the rows if they ever drift.
ALTER TABLE projects ADD COLUMN used_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN file_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN open_uploads INTEGER NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN active_imports INTEGER NOT NULL DEFAULT 0;

UPDATE projects SET
    used_bytes = (SELECT COALESCE(SUM(charged_bytes), 0) FROM files WHERE project_id = projects.id),
    file_count = (SELECT COUNT(*) FROM files WHERE project_id = projects.id),
    open_uploads = (SELECT COUNT(*) FROM upload_sessions WHERE project_id = projects.id AND status = 'active'),
    active_imports = (SELECT COUNT(*) FROM import_tasks WHERE project_id = projects.id AND finished_at IS NULL);

-- An expired file is removed at once when its project would otherwise be refused (quota, limits).
CREATE INDEX files_by_project_expiry ON files (project_id, expires_at);

-- One row that the health check rewrites: a write that fails while the disk is full or read-only.
CREATE TABLE health_probe (
    id         INTEGER PRIMARY KEY,
    checked_at INTEGER NOT NULL
);
