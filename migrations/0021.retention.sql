-- depends: 0019.subsidies-granted-before
--
-- Retention of per-request records (issue 14, item 8): `channel-domain purge` deletes what is
-- older than the idempotency window, oldest first, in small batches. Both tables need to be
-- read by age.
--
-- command_outcomes already records when; an index lets each batch find the oldest at once.
CREATE INDEX command_outcomes_recorded_idx ON command_outcomes (recorded_at);

-- keyed_import_lines did not record when. Rows already there take the time of this migration
-- (a constant default adds the column without rewriting the table), so they are kept a whole
-- window from now.
ALTER TABLE keyed_import_lines ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX keyed_import_lines_recorded_idx ON keyed_import_lines (recorded_at);
COMMENT ON COLUMN keyed_import_lines.recorded_at IS 'When the transaction booking these lines committed; purge reads it.';
COMMENT ON COLUMN command_outcomes.recorded_at IS 'When the command was recorded; purge deletes outcomes older than the window (CHANNEL_DOMAIN_OUTCOME_RETENTION_DAYS).';
