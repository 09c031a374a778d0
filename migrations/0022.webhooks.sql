-- depends: 0021.retention
--
-- Issue 15: webhooks. A subscription is delivery state, not a business fact: its secret must
-- never reach the immutable, exported event log, and its position moves with every delivery.
-- So subscriptions live here, and every change a person makes to one is attributed in
-- `webhook_changes`, which, like `events`, refuses to be rewritten.

CREATE TABLE webhook_subscriptions (
    id                   uuid        PRIMARY KEY,
    url                  text        NOT NULL,
    types                text[]      NOT NULL DEFAULT '{}',  -- empty: every type
    stream_types         text[]      NOT NULL DEFAULT '{}',  -- empty: every stream type
    secret               text,                               -- whsec_…; null once deleted
    status               text        NOT NULL CHECK (status IN ('active', 'paused', 'deleted')),
    -- The reader's checkpoint: every event up to here was delivered, filtered out, or is in
    -- its record's line (webhook_lines), from which it is sent. The status answers a position
    -- below the oldest event still in a line (api.md: every event up to it delivered).
    position             bigint      NOT NULL CHECK (position >= 0),
    last_delivered_at    timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    created_by           text        NOT NULL,
    -- Idempotency of the creation (keys scoped to the actor, as for commands).
    idempotency_key      text,
    request_fingerprint  text,
    UNIQUE (created_by, idempotency_key)
);
COMMENT ON TABLE webhook_subscriptions IS 'Webhook subscriptions and their delivery checkpoints (POST /v1/webhooks).';

-- The events of a record not yet delivered, in position order: the record's line. Every
-- event a subscription wants passes through it (written with the checkpoint's move, deleted
-- after the receiver's 2xx), so a record is sent on its own and commits on its own. Only its
-- first row (the lowest position) is tried at a time; its attempts, next try, last error and
-- parking are the line's. The others wait so that a record's events arrive in order.
CREATE TABLE webhook_lines (
    subscription_id  uuid        NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    position         bigint      NOT NULL,
    stream_id        uuid        NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,  -- failures of this event
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,                            -- why its last attempt failed (a reason, never an address)
    last_error_at    timestamptz,
    parked_at        timestamptz,                     -- set on the line's first row after its 8th failure
    PRIMARY KEY (subscription_id, position)
);
CREATE INDEX webhook_lines_by_record ON webhook_lines (subscription_id, stream_id, position);
COMMENT ON TABLE webhook_lines IS 'Per-record lines of webhook events not yet delivered: being sent, waiting to be tried again, or parked.';

CREATE TABLE webhook_changes (
    subscription_id  uuid        NOT NULL REFERENCES webhook_subscriptions (id),
    seq              bigint      GENERATED ALWAYS AS IDENTITY,
    action           text        NOT NULL CHECK (action IN ('created', 'paused', 'resumed', 'deleted', 'replayed')),
    actor            text        NOT NULL,
    roles            text[]      NOT NULL,
    correlation_id   text,
    at               timestamptz NOT NULL DEFAULT now(),
    details          jsonb       NOT NULL DEFAULT '{}',  -- never the secret
    PRIMARY KEY (subscription_id, seq)
);
COMMENT ON TABLE webhook_changes IS 'Who created, paused, resumed, deleted or replayed a webhook subscription, and when.';

CREATE TRIGGER webhook_changes_are_immutable
    BEFORE UPDATE OR DELETE OR TRUNCATE ON webhook_changes
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_rewrite();
