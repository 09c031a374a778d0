-- depends: 0004.personal-data
--
-- Read models are plain tables a BI tool can query directly (docs/read-models.md). Each
-- projection's checkpoint commits in the transaction of the rows it wrote, so a crash can
-- neither lose nor double-count an event.

CREATE TABLE projection_checkpoints (
    name        text        PRIMARY KEY,
    position    bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE projection_checkpoints IS 'Last global position each read model has applied.';

-- One row per event, for auditors: who, what, when, why.
CREATE TABLE audit_events (
    position        bigint      PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    stream_id       uuid        NOT NULL,
    stream_type     text        NOT NULL,
    version         bigint      NOT NULL,
    type            text        NOT NULL,
    actor           text        NOT NULL,
    roles           text[]      NOT NULL,
    recorded_at     timestamptz NOT NULL,
    effective_on    date,
    correlation_id  text        NOT NULL,
    causation_id    text        NOT NULL,
    data            jsonb       NOT NULL
);
CREATE INDEX audit_events_stream_idx ON audit_events (stream_id, version);
CREATE INDEX audit_events_actor_idx ON audit_events (actor, position);
CREATE INDEX audit_events_type_idx ON audit_events (type, position);
CREATE INDEX audit_events_recorded_idx ON audit_events (recorded_at);
CREATE INDEX audit_events_correlation_idx ON audit_events (correlation_id, position);
COMMENT ON TABLE audit_events IS 'Every event with its metadata; personal fields stay sealed.';
