-- One work queue (src/meta/queue.rs): every leased piece of work — an import task, a webhook delivery, a
-- batch's results being collected — carries the same lease columns, and each claim counts its lease's
-- fence. A holder whose lease ran out and was claimed again holds an older fence, so none of its renewals,
-- releases or settlements applies, even when the new holder is on the same node under the same name.
ALTER TABLE import_tasks ADD COLUMN lease_fence BIGINT NOT NULL DEFAULT 0;
ALTER TABLE webhook_deliveries ADD COLUMN lease_fence BIGINT NOT NULL DEFAULT 0;
-- A batch's collection lease ran until `collecting_until` with no holder named: it now has one, and the
-- collection is renewed while it runs and settled only by its holder.
ALTER TABLE batches ADD COLUMN lease_owner TEXT;
ALTER TABLE batches ADD COLUMN lease_fence BIGINT NOT NULL DEFAULT 0;
