-- depends: 0001.event-store
--
-- Everything one command writes, in one round trip and one transaction: the writer's
-- transaction id first (before any position is drawn — readers depend on it), then the
-- idempotency key, the contracts-in-force registry, the events, and the key's outcome with
-- the positions the events received. Called in autocommit mode, so the call is the commit.

CREATE FUNCTION append_events(
    ids             uuid[],
    versions        bigint[],
    topics          text[],
    states          bytea[],
    recorded        timestamptz[],
    effective       date[],
    outcome_actor   text,
    outcome_key     text,
    outcome_print   text,
    outcome         jsonb,
    force_contract  uuid[],
    force_partner   uuid[],
    force_kind      text[],
    force_during    daterange[],
    force_lowest    numeric[],
    force_highest   numeric[]
) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    drawn bigint[];
BEGIN
    PERFORM pg_current_xact_id();

    IF outcome_key IS NOT NULL THEN
        INSERT INTO command_outcomes (actor, idempotency_key, fingerprint)
        VALUES (outcome_actor, outcome_key, outcome_print);
    END IF;

    INSERT INTO contracts_in_force
        (contract_id, partner_id, partner_kind, during, lowest_rate, highest_rate)
    SELECT * FROM unnest(force_contract, force_partner, force_kind, force_during,
                         force_lowest, force_highest)
    ON CONFLICT (contract_id) DO UPDATE SET
        during = EXCLUDED.during,
        lowest_rate = EXCLUDED.lowest_rate,
        highest_rate = EXCLUDED.highest_rate;

    WITH inserted AS (
        INSERT INTO events
            (originator_id, originator_version, topic, state, recorded_at, effective_on, tx_id)
        SELECT e.id, e.version, e.topic, e.state, e.recorded, e.effective, pg_current_xact_id()
        FROM unnest(ids, versions, topics, states, recorded, effective)
             WITH ORDINALITY AS e(id, version, topic, state, recorded, effective, ord)
        ORDER BY e.ord
        RETURNING position
    )
    SELECT array_agg(position ORDER BY position) INTO drawn FROM inserted;

    IF outcome_key IS NOT NULL THEN
        UPDATE command_outcomes
        SET outcome = append_events.outcome || jsonb_build_object(
            'position', drawn[array_upper(drawn, 1)], 'positions', to_jsonb(drawn))
        WHERE actor = outcome_actor AND idempotency_key = outcome_key;
    END IF;

    RETURN QUERY SELECT unnest(drawn);
END;
$$;
