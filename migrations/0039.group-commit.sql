-- depends: 0038.token-change-notifications
--
-- Issue 18, P1: group commit. Commands of one process that are ready to append while another
-- group is being written go together, in one call of append_events and so one transaction
-- (channel_domain.store.group_commit); a group that fails is written again one command at a
-- time, so a refused command fails alone. For that, append_events (0018) takes its commands'
-- idempotency keys and outcomes as arrays, each with the range of events its command wrote
-- (`outcome_first` .. `outcome_last`, 1-based, inclusive), and writes each outcome once, with
-- its own positions. It takes the selling gates and writes the events' rows in one order
-- whatever the order of its commands, so two groups never wait on each other crosswise.

-- The 0018 function stays beside it (its arguments differ, so every call names one): a node
-- still on the release before this one goes on appending while the nodes are replaced.

CREATE FUNCTION append_events(
    ids             uuid[],
    versions        bigint[],
    topics          text[],
    states          bytea[],
    recorded        timestamptz[],
    effective       date[],
    outcome_actor   text[],
    outcome_key     text[],
    outcome_print   text[],
    outcome         jsonb[],
    outcome_first   int[],
    outcome_last    int[],
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
    erase_subjects  uuid[],
    sellers_checked          uuid[],
    sellers_checked_versions bigint[],
    seller_closed            uuid,
    seller_closed_version    bigint,
    contracts_seen           uuid[],
    contracts_seen_versions  bigint[],
    import_actor    text,
    import_key      text,
    import_lines    int[],
    import_digests  bigint[]
) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    SELLING_GATE CONSTANT int := 1936026732;  -- 'sell': the advisory-lock class of selling gates
    drawn bigint[];
    hashes bytea[];
    prevs bytea[];
    previous bytea;
    n int := coalesce(array_length(ids, 1), 0);
    i int;
BEGIN
    PERFORM pg_current_xact_id();

    -- The selling gates come first, before this transaction waits on anything else: a sale
    -- holds its sellers' gates shared, a suspension its partner's exclusively, and neither
    -- waits on the other while holding a lock the other needs.
    IF cardinality(sellers_checked) > 0 THEN
        -- In one order for every transaction: a group's sales hold several sellers' gates,
        -- and two groups taking them in opposite orders behind a waiting closing would deadlock.
        PERFORM pg_advisory_xact_lock_shared(SELLING_GATE, gate)
        FROM (SELECT DISTINCT uuid_hash(seller) AS gate FROM unnest(sellers_checked) AS seller ORDER BY 1) AS gates;
        -- A statement of its own, after the locks: its snapshot sees every closing committed
        -- before them, and none can commit now until this transaction does.
        IF EXISTS (SELECT 1 FROM selling_gates g
                   JOIN unnest(sellers_checked, sellers_checked_versions) AS c(id, version) ON g.record_id = c.id
                   WHERE g.version > c.version) THEN
            RAISE EXCEPTION 'a seller''s selling days closed after the sale was checked'
                USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'selling_gate';
        END IF;
    END IF;

    IF seller_closed IS NOT NULL THEN
        -- Waits for the sales in flight that checked this seller, and holds back new ones.
        PERFORM pg_advisory_xact_lock(SELLING_GATE, uuid_hash(seller_closed));
        INSERT INTO selling_gates (record_id, version) VALUES (seller_closed, seller_closed_version)
        ON CONFLICT (record_id) DO UPDATE SET version = EXCLUDED.version;
        -- A partner's closing was decided on its contracts' sales as loaded: a sale that
        -- committed since (or a contract unseen) may lie in the closed days: decide again.
        IF contracts_seen IS NOT NULL AND EXISTS (
            SELECT 1 FROM contracts_in_force c
            LEFT JOIN unnest(contracts_seen, contracts_seen_versions) AS s(id, version) ON s.id = c.contract_id
            WHERE c.partner_id = seller_closed
              AND (s.id IS NULL OR EXISTS (SELECT 1 FROM events e
                                           WHERE e.originator_id = c.contract_id
                                             AND e.originator_version = s.version + 1))) THEN
            RAISE EXCEPTION 'the partner''s contracts took sales while its closing was decided'
                USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'selling_gate';
        END IF;
    END IF;

    IF import_key IS NOT NULL THEN
        INSERT INTO keyed_import_lines (actor, idempotency_key, lines, digests)
        VALUES (import_actor, import_key, import_lines, import_digests);
    END IF;

    IF cardinality(force_contract) > 0 THEN
        -- Writers of the registry take turns (signing, terminating, renewing are rare): two
        -- inserting conflicting rows at once would each wait on the other's row to check the
        -- exclusion constraints — a deadlock — where in turn the second meets the first's
        -- committed row and is refused cleanly.
        PERFORM pg_advisory_xact_lock(7438190523601042);
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
         AS e(position, id, version, topic, state, recorded, effective, hash, prev)
    -- Rows in one order for every transaction: two groups writing the same two records (from
    -- two processes) would otherwise each wait on the other's first row.
    ORDER BY e.id, e.version;

    IF cardinality(outcome_key) > 0 THEN
        INSERT INTO command_outcomes (actor, idempotency_key, fingerprint, outcome)
        SELECT o.actor, o.key, o.print,
               o.outcome || jsonb_build_object('position', drawn[o.last_event],
                                           'positions', to_jsonb(drawn[o.first_event:o.last_event]))
        FROM unnest(outcome_actor, outcome_key, outcome_print, outcome, outcome_first, outcome_last)
             AS o(actor, key, print, outcome, first_event, last_event)
        ORDER BY o.actor, o.key;  -- as the events' rows, in one order for every transaction
    END IF;

    RETURN QUERY SELECT unnest(drawn);
END;
$$;
