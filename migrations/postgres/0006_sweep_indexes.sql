-- The janitor's two queue reads, by age (see migrations/sqlite/0008_sweep_indexes.sql).
CREATE INDEX blob_garbage_by_age ON blob_garbage (queued_at);
CREATE INDEX import_idempotency_by_age ON import_idempotency (created_at);
