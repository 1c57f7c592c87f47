-- Delivery workers claim each project's due deliveries in turn (a project's backlog never holds up
-- another's next delivery): they find the projects with due deliveries by skipping from one project to the
-- next in this index, and take the oldest of each.
CREATE INDEX webhook_deliveries_by_project ON webhook_deliveries (project_id, next_attempt_at);

-- Every node's batch watcher walks all unfinished batches, page by page, in this order.
CREATE INDEX batches_by_creation ON batches (created_at, id);
