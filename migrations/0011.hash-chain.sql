-- depends: 0010.commissions
--
-- Tamper evidence (docs/audit.md).
--
-- 1. A hash chain per stream, written by the inserting transaction itself: each event's hash
--    covers its position, stream, version, topic, times, its stored bytes (data and metadata:
--    actor, roles, correlation, causation) and the hash of the stream's previous event.
--    Writers to different streams never wait for each other.
-- 2. Seals, written afterwards in global position order by the `audit_seals` projection: one
--    row per event chaining every event hash before it, so a deleted, inserted or reordered
--    event is found at its position, across streams.

ALTER TABLE events ADD COLUMN hash bytea, ADD COLUMN prev_hash bytea;

COMMENT ON COLUMN events.hash IS 'SHA-256 of prev_hash || header || state; see docs/audit.md.';
COMMENT ON COLUMN events.prev_hash IS 'The hash of the stream''s previous event; 32 zero bytes for version 1.';

-- The header is UTF-8 text, one field a line, each line ending in a newline.
CREATE FUNCTION event_hash(prev bytea, pos bigint, stream uuid, version bigint, topic text,
                           recorded timestamptz, effective date, state bytea)
RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT sha256(prev || convert_to(
        'channel-domain/event/v1' || chr(10)
        || pos::text || chr(10)
        || stream::text || chr(10)
        || version::text || chr(10)
        || topic || chr(10)
        || to_char(recorded AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || chr(10)
        || coalesce(to_char(effective, 'YYYY-MM-DD'), '') || chr(10), 'UTF8') || state)
$$;

CREATE FUNCTION chain_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    previous bytea;
BEGIN
    IF NEW.originator_version = 1 THEN
        previous := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    ELSE
        -- Rows inserted earlier by the same statement are visible here.
        SELECT hash INTO previous FROM events
        WHERE originator_id = NEW.originator_id AND originator_version = NEW.originator_version - 1;
        IF previous IS NULL THEN
            RAISE EXCEPTION 'stream % has no version % to chain to', NEW.originator_id,
                NEW.originator_version - 1 USING ERRCODE = 'foreign_key_violation';
        END IF;
    END IF;
    NEW.prev_hash := previous;
    NEW.hash := event_hash(previous, NEW.position, NEW.originator_id, NEW.originator_version, NEW.topic,
                           NEW.recorded_at, NEW.effective_on, NEW.state);
    RETURN NEW;
END;
$$;

-- Events recorded before this migration get their chain once, in each stream's order.
ALTER TABLE events DISABLE TRIGGER events_are_immutable;
DO $$
DECLARE
    row record;
    previous bytea;
    stream uuid;
BEGIN
    FOR row IN SELECT * FROM events ORDER BY originator_id, originator_version LOOP
        IF row.originator_version = 1 OR stream IS DISTINCT FROM row.originator_id THEN
            previous := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
        END IF;
        stream := row.originator_id;
        UPDATE events SET prev_hash = previous,
                          hash = event_hash(previous, row.position, row.originator_id, row.originator_version,
                                            row.topic, row.recorded_at, row.effective_on, row.state)
        WHERE originator_id = row.originator_id AND originator_version = row.originator_version
        RETURNING hash INTO previous;
    END LOOP;
END;
$$;
ALTER TABLE events ENABLE TRIGGER events_are_immutable;

ALTER TABLE events ALTER COLUMN hash SET NOT NULL, ALTER COLUMN prev_hash SET NOT NULL;

CREATE TRIGGER events_are_chained BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION chain_event();

CREATE TABLE event_seals (
    position   bigint      PRIMARY KEY,
    event_hash bytea       NOT NULL,
    chain      bytea       NOT NULL,
    sealed_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE event_seals IS 'One row per event, in position order: chain = SHA-256(previous chain || position as 8 bytes big-endian || event hash).';
COMMENT ON COLUMN event_seals.chain IS 'The head of the whole log up to this position; 32 zero bytes before the first.';

-- Seals are evidence: once written they never change.
CREATE TRIGGER event_seals_are_immutable
    BEFORE UPDATE OR DELETE ON event_seals
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_rewrite();

-- Which command recorded each event, for the causation graph (rows projected before this
-- migration have none until `channel-domain rebuild audit_events`).
ALTER TABLE audit_events ADD COLUMN command_id text;
