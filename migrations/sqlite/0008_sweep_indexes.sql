-- The janitor's two queue reads, by age, without scanning their tables: the garbage queue is read 500
-- oldest keys at a time (after 100 000 expirations it holds 100 000 rows, and each batch sorted them all:
-- 6.2 ms a batch, 0.25 ms with the index), and idempotency records are purged by age every sweep.
CREATE INDEX blob_garbage_by_age ON blob_garbage (queued_at);
CREATE INDEX import_idempotency_by_age ON import_idempotency (created_at);
