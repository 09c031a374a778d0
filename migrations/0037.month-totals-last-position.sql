-- depends: 0036.audit-workspace-sessions
--
-- Issue 18, P7: a statement's lines, read at 50/s while sales come, are kept as built (their
-- JSON) in the server process. What tells a kept copy is still the month's lines is the month's
-- row here: the lines are only ever added to, in position order, so the number of lines and the
-- position of the last one name exactly which lines the month holds. `last_position` is that
-- position, kept by the `commissions` projection in the upsert that adds the lines' sums.
--
-- The projection has a checkpoint in a database with events and will not replay the log for
-- this column: it is filled here from the lines written so far. It stays nullable: during a
-- rolling upgrade (docs/deploy.md) nodes of the previous release still project, and their
-- upsert names no `last_position` — a NOT NULL would stop the read model on its first batch. A
-- row they wrote (null, or a position that no longer counts all its lines) is never used to
-- keep lines: the statement checks that the lines up to `last_position` number `lines`.

ALTER TABLE commission_month_totals ADD COLUMN last_position bigint;

UPDATE commission_month_totals AS t
SET last_position = l.last_position
FROM (SELECT partner_id, period, max(position) AS last_position FROM commission_lines GROUP BY partner_id, period) AS l
WHERE l.partner_id = t.partner_id AND l.period = t.period;

COMMENT ON COLUMN commission_month_totals.last_position IS 'The position of the month''s latest line: with `lines`, which lines the month holds (they are only ever added, in position order); null where a node of an earlier release wrote the row.';
