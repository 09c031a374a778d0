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
    -- Every event up to here was delivered, filtered out, or set aside in its record's line
    -- (webhook_lines). Moved only after the receiver's 2xx, in the transaction that records it.
    position             bigint      NOT NULL CHECK (position >= 0),
    last_error           text,
    last_error_at        timestamptz,
    last_delivered_at    timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    created_by           text        NOT NULL,
    -- Idempotency of the creation (keys scoped to the actor, as for commands).
    idempotency_key      text,
    request_fingerprint  text,
    UNIQUE (created_by, idempotency_key)
);
COMMENT ON TABLE webhook_subscriptions IS 'Webhook subscriptions and their delivery checkpoints (POST /v1/webhooks).';

-- The events of a record that wait behind one that failed, in position order: the record's
-- line. Only its first row (the lowest position) is ever tried; its attempts, next try and
-- parking are the line's. The others wait so that a record's events arrive in order.
CREATE TABLE webhook_lines (
    subscription_id  uuid        NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    position         bigint      NOT NULL,
    stream_id        uuid        NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,  -- failures of this event
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    parked_at        timestamptz,                     -- set on the line's first row after its 8th failure
    PRIMARY KEY (subscription_id, position)
);
CREATE INDEX webhook_lines_by_record ON webhook_lines (subscription_id, stream_id, position);
COMMENT ON TABLE webhook_lines IS 'Per-record lines of webhook events waiting behind a failed delivery, or parked.';

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
