-- depends: 0003.api-tokens
--
-- Personal data (PIPL): an employee's name, national id and bank card are sealed in the
-- events with a key of that employee. Erasure destroys the key in the transaction that
-- records the erasure event, so the events stay (and keep their hashes) while the fields
-- can no longer be read by anyone. A new employee's key is stored with the hiring event.

CREATE TABLE personal_data_keys (
    subject_id  uuid        PRIMARY KEY,
    key         bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    erased_at   timestamptz,
    CHECK ((key IS NULL) = (erased_at IS NOT NULL))
);

DROP FUNCTION append_events(uuid[], bigint[], text[], bytea[], timestamptz[], date[], text, text, text, jsonb,
                            uuid[], uuid[], text[], daterange[], numeric[], numeric[]);

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
    force_highest   numeric[],
    key_subjects    uuid[],
    key_values      bytea[],
    erase_subjects  uuid[]
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

    INSERT INTO personal_data_keys (subject_id, key)
    SELECT * FROM unnest(key_subjects, key_values);

    UPDATE personal_data_keys SET key = NULL, erased_at = now()
    WHERE subject_id = ANY(erase_subjects) AND key IS NOT NULL;

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
