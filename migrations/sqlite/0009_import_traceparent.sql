-- The W3C traceparent of the request that created an import, so that its fetch, in a worker on any node
-- and maybe much later, continues that trace and tells the source (telemetry/traces.rs).
ALTER TABLE import_tasks ADD COLUMN traceparent TEXT;
