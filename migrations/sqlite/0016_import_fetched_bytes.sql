-- Bytes an import's worker has received so far, ahead of what it committed (`received_bytes`, the resume
-- point): written about once a second while it fetches, so that the import's progress moves as bytes
-- arrive on every node, not only at each commit of several parts.
ALTER TABLE import_tasks ADD COLUMN fetched_bytes INTEGER NOT NULL DEFAULT 0;
