-- depends: 0012.speed
--
-- Issue 13, contracts.
--
-- 1. 「分别在不同的地区」: no two enterprise agents' contracts in force for the same region on the
--    same day, enforced like the one sales agent rule — an exclusion constraint on the registry
--    of contracts in force, so racing signatures (and renewals) cannot both win. GiST compares
--    text for equality only with the btree_gist extension, which an embedded PostgreSQL may
--    lack; a region as the one-point range [name, name] of a range type over text needs
--    nothing beyond the core: two such ranges overlap exactly when the names are equal.
CREATE TYPE region_point AS RANGE (subtype = text, collation = "C");

ALTER TABLE contracts_in_force ADD COLUMN territory text;

-- 2. Every version of a contract's commission terms over the days it is in force, so that a
--    sales agent's rate is held against every enterprise-agent rate in force on any of its
--    days, not only the terms on each contract's last day. Rewritten with its contract's
--    registry row, in the transaction of the contract's events.
CREATE TABLE contract_terms_in_force (
    contract_id   uuid      NOT NULL REFERENCES contracts_in_force ON DELETE CASCADE,
    partner_kind  text      NOT NULL,
    during        daterange NOT NULL,
    lowest_rate   numeric   NOT NULL,
    highest_rate  numeric   NOT NULL
);
CREATE INDEX contract_terms_in_force_contract_idx ON contract_terms_in_force (contract_id);
CREATE INDEX contract_terms_in_force_during_idx ON contract_terms_in_force USING gist (during);

-- The registry as the contracts' events say it, for the rows written before this migration
-- (and, called again, to check the rows written since: tests/channel_domain/store).
CREATE FUNCTION commission_rates(terms jsonb, OUT lowest numeric, OUT highest numeric)
LANGUAGE sql IMMUTABLE AS $$
    SELECT min(rate), max(rate) FROM (
        SELECT (terms ->> 'rate')::numeric AS rate WHERE terms ->> 'type' = 'flat'
        UNION ALL
        SELECT (tier ->> 'rate')::numeric
        FROM jsonb_array_elements(CASE WHEN terms ->> 'type' = 'tiered' THEN terms -> 'tiers' ELSE '[]' END) AS tier
    ) AS rates
$$;

CREATE FUNCTION rebuild_contract_terms_in_force() RETURNS void
LANGUAGE sql AS $$
    UPDATE contracts_in_force c SET territory = convert_from(e.state, 'UTF8')::jsonb ->> 'territory'
    FROM events e WHERE e.originator_id = c.contract_id AND e.originator_version = 1;

    DELETE FROM contract_terms_in_force;

    -- The drafted terms from the first day, then each amendment from its effective date (ties:
    -- the later recorded wins), each up to the day before the next, within the days in force.
    WITH versions AS (
        SELECT c.contract_id, c.partner_kind, c.during, lower(c.during) AS effective_on, 0::bigint AS version,
               convert_from(e.state, 'UTF8')::jsonb -> 'commission' AS terms
        FROM contracts_in_force c
        JOIN events e ON e.originator_id = c.contract_id AND e.originator_version = 1
        WHERE NOT isempty(c.during)
        UNION ALL
        SELECT c.contract_id, c.partner_kind, c.during,
               (convert_from(e.state, 'UTF8')::jsonb -> 'effective_on' ->> '_data_')::date, e.originator_version,
               convert_from(e.state, 'UTF8')::jsonb -> 'commission'
        FROM contracts_in_force c
        JOIN events e ON e.originator_id = c.contract_id AND e.topic = 'channel_domain.contract:Contract.Amended'
        WHERE NOT isempty(c.during)
    ), spans AS (
        SELECT contract_id, partner_kind, terms,
               during * daterange(effective_on,
                                  lead(effective_on) OVER (PARTITION BY contract_id ORDER BY effective_on, version),
                                  '[)') AS during
        FROM versions
    )
    INSERT INTO contract_terms_in_force (contract_id, partner_kind, during, lowest_rate, highest_rate)
    SELECT s.contract_id, s.partner_kind, s.during, r.lowest, r.highest
    FROM spans s, commission_rates(s.terms) r
    WHERE NOT isempty(s.during);
$$;

DO $$ BEGIN PERFORM rebuild_contract_terms_in_force(); END $$;

ALTER TABLE contracts_in_force ADD CONSTRAINT one_enterprise_agent_per_region
    EXCLUDE USING gist (region_point(territory, territory, '[]') WITH &&, during WITH &&)
    WHERE (partner_kind = 'enterprise_agent');

-- 3. append_events (0012) with the registry's territory and terms.
DROP FUNCTION append_events(uuid[], bigint[], text[], bytea[], timestamptz[], date[], text, text, text, jsonb,
                            uuid[], uuid[], text[], daterange[], numeric[], numeric[], uuid[], bytea[], uuid[]);

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
    force_territory text[],
    terms_contract  uuid[],
    terms_kind      text[],
    terms_during    daterange[],
    terms_lowest    numeric[],
    terms_highest   numeric[],
    key_subjects    uuid[],
    key_values      bytea[],
    erase_subjects  uuid[]
) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    drawn bigint[];
    hashes bytea[];
    prevs bytea[];
    previous bytea;
    n int := coalesce(array_length(ids, 1), 0);
    i int;
BEGIN
    PERFORM pg_current_xact_id();

    IF cardinality(force_contract) > 0 THEN
        -- Writers of the registry take turns (signing, terminating, renewing are rare): two
        -- inserting conflicting rows at once would each wait on the other's row to check the
        -- exclusion constraints — a deadlock — where in turn the second meets the first's
        -- committed row and is refused cleanly.
        PERFORM pg_advisory_xact_lock(7438190523601042);
    END IF;

    IF outcome_key IS NOT NULL THEN
        INSERT INTO command_outcomes (actor, idempotency_key, fingerprint)
        VALUES (outcome_actor, outcome_key, outcome_print);
    END IF;

    IF cardinality(force_contract) > 0 THEN
        INSERT INTO contracts_in_force
            (contract_id, partner_id, partner_kind, during, lowest_rate, highest_rate, territory)
        SELECT * FROM unnest(force_contract, force_partner, force_kind, force_during,
                             force_lowest, force_highest, force_territory)
        ON CONFLICT (contract_id) DO UPDATE SET
            during = EXCLUDED.during,
            lowest_rate = EXCLUDED.lowest_rate,
            highest_rate = EXCLUDED.highest_rate,
            territory = EXCLUDED.territory;
        DELETE FROM contract_terms_in_force WHERE contract_id = ANY(force_contract);
        INSERT INTO contract_terms_in_force (contract_id, partner_kind, during, lowest_rate, highest_rate)
        SELECT * FROM unnest(terms_contract, terms_kind, terms_during, terms_lowest, terms_highest);
    END IF;

    IF cardinality(key_subjects) > 0 THEN
        INSERT INTO personal_data_keys (subject_id, key)
        SELECT * FROM unnest(key_subjects, key_values);
    END IF;

    IF cardinality(erase_subjects) > 0 THEN
        UPDATE personal_data_keys SET key = NULL, erased_at = now()
        WHERE subject_id = ANY(erase_subjects) AND key IS NOT NULL;
    END IF;

    SELECT array_agg(nextval('events_position_seq') ORDER BY g) INTO drawn FROM generate_series(1, n) AS g;
    FOR i IN 1 .. n LOOP
        previous := NULL;
        IF versions[i] = 1 THEN
            previous := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
        ELSIF i > 1 AND ids[i - 1] = ids[i] AND versions[i - 1] = versions[i] - 1 THEN
            previous := hashes[i - 1];  -- a record's events come together, in version order
        ELSE
            SELECT hash INTO previous FROM events
            WHERE originator_id = ids[i] AND originator_version = versions[i] - 1;
            IF previous IS NULL THEN
                RAISE EXCEPTION 'stream % has no version % to chain to', ids[i], versions[i] - 1
                    USING ERRCODE = 'foreign_key_violation';
            END IF;
        END IF;
        prevs[i] := previous;
        hashes[i] := event_hash(previous, drawn[i], ids[i], versions[i], topics[i], recorded[i], effective[i],
                                states[i]);
    END LOOP;

    INSERT INTO events
        (position, originator_id, originator_version, topic, state, recorded_at, effective_on, tx_id,
         hash, prev_hash)
    OVERRIDING SYSTEM VALUE
    SELECT e.position, e.id, e.version, e.topic, e.state, e.recorded, e.effective, pg_current_xact_id(),
           e.hash, e.prev
    FROM unnest(drawn, ids, versions, topics, states, recorded, effective, hashes, prevs)
         AS e(position, id, version, topic, state, recorded, effective, hash, prev);

    IF outcome_key IS NOT NULL THEN
        UPDATE command_outcomes
        SET outcome = append_events.outcome || jsonb_build_object(
            'position', drawn[n], 'positions', to_jsonb(drawn))
        WHERE actor = outcome_actor AND idempotency_key = outcome_key;
    END IF;

    RETURN QUERY SELECT unnest(drawn);
END;
$$;
