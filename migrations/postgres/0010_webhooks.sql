-- Webhooks (see migrations/sqlite/0012_webhooks.sql for what each column means).
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
    previous_until         BIGINT,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL
);
CREATE INDEX webhooks_by_project ON webhooks (project_id, id);

-- The secret that signs a project's per-request webhooks (an import's `webhook_config`).
CREATE TABLE project_signing_secrets (
    project_id     TEXT    NOT NULL PRIMARY KEY,
    secret         TEXT    NOT NULL,
    previous_secret TEXT,
    previous_until BIGINT,
    updated_at     BIGINT NOT NULL
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
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id);
