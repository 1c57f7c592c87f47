-- Webhooks (`services::webhooks`): who is told of a project's events, and the outbox of what is still to
-- be told. A delivery row is written in the same transaction as the state change it reports, so a crash
-- between the two loses nothing and invents nothing; it is deleted once the receiver answered 2xx (or
-- retries ran out). `id` is the Standard Webhooks `webhook-id`, the same on every retry.
CREATE TABLE webhooks (
    id                     TEXT    NOT NULL PRIMARY KEY,
    project_id             TEXT    NOT NULL,
    uri                    TEXT    NOT NULL,
    -- Event types, space-separated.
    events                 TEXT    NOT NULL,
    state                  TEXT    NOT NULL,
    -- Signing secrets are kept as they are: an HMAC needs the secret itself (as every Standard Webhooks
    -- sender does). The previous one keeps signing beside the new one until `previous_until`.
    secret                 TEXT    NOT NULL,
    previous_secret        TEXT,
    previous_until         INTEGER,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
);
CREATE INDEX webhooks_by_project ON webhooks (project_id, id);

-- The secret that signs a project's per-request webhooks (an import's `webhook_config`).
CREATE TABLE project_signing_secrets (
    project_id     TEXT    NOT NULL PRIMARY KEY,
    secret         TEXT    NOT NULL,
    previous_secret TEXT,
    previous_until INTEGER,
    updated_at     INTEGER NOT NULL
);

-- An import's `webhook_config` (JSON), told of that file's events until its row goes.
ALTER TABLE files ADD COLUMN webhook_config TEXT;

CREATE TABLE webhook_deliveries (
    id              TEXT    NOT NULL PRIMARY KEY,
    project_id      TEXT    NOT NULL,
    -- A registered webhook (its pending deliveries go with it), or NULL for a per-request one at `uri`.
    webhook_id      TEXT    REFERENCES webhooks (id) ON DELETE CASCADE,
    uri             TEXT,
    event_type      TEXT    NOT NULL,
    -- The event as recorded (`services::webhooks::event`), rendered into the body at delivery.
    event           TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_error      TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id);
