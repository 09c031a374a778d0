-- depends: 0019.subsidies-granted-before
--
-- Issue 14, item 7: a poison event stops one read model, loudly.
--
-- A read model whose batch keeps failing is stopped at the event that fails, and the state is
-- kept here rather than in the worker's memory, so that every process (API nodes answering
-- /v1/projections and /metrics, the other workers, the CLI) sees it, and a restarted worker
-- does not start retrying for ever again. `channel-domain projections retry` deletes the row.

CREATE TABLE projection_failures (
    name        text        PRIMARY KEY,
    position    bigint      NOT NULL,  -- the event the read model cannot apply; its checkpoint is just before
    event_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    error       text        NOT NULL,  -- exception type and message
    traceback   text        NOT NULL,  -- for the operator (CLI); never served over HTTP
    attempts    integer     NOT NULL,
    since       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE projection_failures IS 'Read models stopped at an event they cannot apply, until an operator retries.';

-- The operator's decisions to skip one event for one read model. The decision itself is an
-- event in the log (ProjectionSkip.Decided, with its actor and reason, for auditors); this
-- table is the workers' index of it, so a batch looks its skips up with one range scan.
CREATE TABLE projection_skips (
    name          text        NOT NULL,
    position      bigint      NOT NULL,
    decision_id   uuid        NOT NULL,  -- the ProjectionSkip record in the log
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, position)
);
COMMENT ON TABLE projection_skips IS 'Events an operator decided a read model skips (see the ProjectionSkip records in the log).';
