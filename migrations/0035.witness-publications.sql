-- depends: 0034.report-speed
--
-- Issue 17, part 3: `channel-domain checkpoints publish --to URL` posts each signed checkpoint to
-- a witness's HTTP endpoint. An endpoint offers no standard way to ask what it holds, so what it
-- has accepted is remembered here, per target: the last checkpoint it answered 2xx to. A file
-- target needs no row: the file's last line says how far it goes (docs/audit.md, "Publishing
-- checkpoints to a witness").
--
-- A row lost or rolled back only makes the next run post again what the witness has already:
-- publishing is at least once, and a witness keys what it keeps by the signature.

CREATE TABLE witness_publications (
    target        text        PRIMARY KEY,
    checkpoint_id bigint      NOT NULL REFERENCES merkle_checkpoints (id),
    published_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE witness_publications IS 'For each HTTP witness (target = its URL), the last signed checkpoint it accepted; checkpoints after it are posted next.';
