-- The event store: every event of the four aggregates in one table, with one global order.
--
-- `position` comes from a sequence with CACHE 1, so positions are handed out in time order.
-- Sequences are not transactional, so a position can become visible after a higher one;
-- `tx_id` (the writer's transaction id, taken before its positions) lets readers know
-- when no lower position can still appear. See README "Ordering without a table lock".

CREATE TABLE events (
    position            bigint      GENERATED ALWAYS AS IDENTITY (CACHE 1),
    originator_id       uuid        NOT NULL,
    originator_version  bigint      NOT NULL,
    topic               text        NOT NULL,
    state               bytea       NOT NULL,
    recorded_at         timestamptz NOT NULL,
    effective_on        date,
    tx_id               xid8        NOT NULL,
    PRIMARY KEY (originator_id, originator_version)
);
CREATE UNIQUE INDEX events_position_idx ON events (position);

COMMENT ON TABLE events IS 'Append-only log of every domain event; never updated or deleted.';
COMMENT ON COLUMN events.position IS 'Global order of the log; gaps are left by aborted writes.';
COMMENT ON COLUMN events.recorded_at IS 'When the event was recorded (UTC), for as-of reads.';
COMMENT ON COLUMN events.effective_on IS 'Business-effective date (sale date, amendment date ...), if any.';
COMMENT ON COLUMN events.tx_id IS 'Writer transaction id, assigned before its positions.';

-- Corrections are new events: the stored history itself never changes.
CREATE FUNCTION refuse_event_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER events_are_immutable
    BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_rewrite();

-- Snapshots are a cache of aggregate state at a version; they can be dropped at any time.
CREATE TYPE stored_event_uuid AS (
    originator_id uuid, originator_version bigint, topic text, state bytea
);
CREATE TABLE snapshots (
    originator_id       uuid   NOT NULL,
    originator_version  bigint NOT NULL,
    topic               text   NOT NULL,
    state               bytea  NOT NULL,
    PRIMARY KEY (originator_id, originator_version)
);

-- One row per command that carried an Idempotency-Key, written in the transaction of its
-- events: the key exists if and only if the events do.
CREATE TABLE command_outcomes (
    actor           text        NOT NULL,
    idempotency_key text        NOT NULL,
    fingerprint     text        NOT NULL,
    outcome         jsonb,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor, idempotency_key)
);

-- Contracts signed and their days in force, written with the contract's events. The
-- exclusion constraint is the company-wide rule 「同一时期只能委托一家销售代理商」: two
-- sales agents' contracts can never be in force on the same day, however many writers race.
CREATE TABLE contracts_in_force (
    contract_id   uuid      PRIMARY KEY,
    partner_id    uuid      NOT NULL,
    partner_kind  text      NOT NULL,
    during        daterange NOT NULL,
    lowest_rate   numeric   NOT NULL,
    highest_rate  numeric   NOT NULL,
    CONSTRAINT one_sales_agent_at_a_time
        EXCLUDE USING gist (during WITH &&) WHERE (partner_kind = 'sales_agent')
);
CREATE INDEX contracts_in_force_kind_idx ON contracts_in_force (partner_kind);
