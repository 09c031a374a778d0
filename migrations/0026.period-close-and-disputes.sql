-- depends: 0024.webhook-waiting-lines
--
-- Issue 16, part 2: commission periods close, and statement lines are disputed (domain.md §6,
-- "Period close"; api.md, "Commission periods and disputes").
--
-- A closed month takes no new lines: what would land in it (a late sale, a return, a deal, a
-- re-pricing adjustment, an upheld dispute) is booked as an adjustment in the first open month,
-- naming the month it corrects. Months close in order, so the closed months are always every
-- month up to the latest one closed, and a closed statement — lines, figures and the balance
-- it carries out — never changes again.

-- 1. The months closed, written by the close command in the transaction of its event (like
--    employee_logins): the command side reads it to refuse a second close and a payout or
--    housing subsidy prepared for a closed month, exactly, under the advisory lock
--    `channel_domain.commission_books` (closes take it exclusive, preparations shared).
CREATE TABLE commission_closed_periods (
    period        text        PRIMARY KEY CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    closes_after  text,
    position      bigint      NOT NULL,
    closed_at     timestamptz NOT NULL,
    closed_by     text        NOT NULL
);
COMMENT ON TABLE commission_closed_periods IS
    'Registry (command side): one row per CommissionPeriod.Closed, written with the event. Every month up to the latest row is closed.';
COMMENT ON COLUMN commission_closed_periods.closes_after IS
    'The month closed before this one (null for the first close, which closed every month before it too).';

-- 2. The commissions read model's own copy, applied in log order: a line is routed by whether
--    a close precedes its event in position order, so a rebuild books the same ledger.
CREATE TABLE commission_periods (
    period        text        PRIMARY KEY,
    closes_after  text,
    position      bigint      NOT NULL,
    event_id      uuid        NOT NULL UNIQUE,
    closed_by     text        NOT NULL,
    closed_at     timestamptz NOT NULL
);
COMMENT ON TABLE commission_periods IS
    'One row per closed month (CommissionPeriod.Closed); a month is closed when a row for it or a later month exists.';

-- 3. Lines: an adjustment may carry a line of a closed month (its kind in moved_kind, with its
--    order, date, amount, rate, commission and fee rate), or book an upheld dispute.
ALTER TABLE commission_lines
    ADD COLUMN moved_kind text CHECK (moved_kind IN ('sale', 'return', 'deal')),
    ADD COLUMN dispute_id uuid,
    ADD CONSTRAINT commission_lines_adjustment_only
        CHECK ((moved_kind IS NULL AND dispute_id IS NULL) OR kind = 'adjustment');
CREATE INDEX commission_lines_dispute_idx ON commission_lines (dispute_id) WHERE dispute_id IS NOT NULL;
COMMENT ON COLUMN commission_lines.moved_kind IS
    'For an adjustment carrying a sale, return or deal of a closed month into the first open month: its kind.';
COMMENT ON COLUMN commission_lines.dispute_id IS 'For an adjustment booking an upheld dispute: the dispute.';

-- 4. Disputes of statement lines, one row each, with their resolution.
CREATE TABLE commission_disputes (
    dispute_id         uuid        PRIMARY KEY,
    partner_id         uuid        NOT NULL,
    period             text        NOT NULL,
    line_position      bigint      NOT NULL,
    line_no            integer,
    line_event_id      uuid        NOT NULL,
    contract_id        uuid,
    reason             text        NOT NULL,
    raised_by          text        NOT NULL,
    raised_at          timestamptz NOT NULL,
    position           bigint      NOT NULL,
    event_id           uuid        NOT NULL UNIQUE,
    status             text        NOT NULL CHECK (status IN ('open', 'upheld', 'rejected')),
    resolved_by        text,
    resolved_at        timestamptz,
    note               text,
    amount             numeric,
    resolved_position  bigint,
    resolved_event_id  uuid,
    adjustment_period  text
);
CREATE INDEX commission_disputes_statement_idx ON commission_disputes (partner_id, period, position);
COMMENT ON TABLE commission_disputes IS
    'One row per CommissionDispute: raised against a statement line, then resolved (upheld with an amount booked as an adjustment line, or rejected).';

-- 5. Statements: a carried line's amount is proceeds the consignee handled, so a consignee's
--    settlement counts it: S = net proceeds + adjusted_sales − commission − fees − adjustments.
--    New columns at the end: adjusted_sales and period_status.
CREATE OR REPLACE VIEW commission_statements AS
WITH RECURSIVE months AS (
    SELECT l.partner_id,
           l.period,
           coalesce(sum(l.amount) FILTER (WHERE l.kind IN ('sale', 'deal')), 0) AS gross_sales,
           coalesce(-sum(l.amount) FILTER (WHERE l.kind = 'return'), 0) AS returns,
           coalesce(sum(l.commission) FILTER (WHERE l.kind <> 'adjustment'), 0) AS commission,
           coalesce(sum(l.commission) FILTER (WHERE l.kind = 'adjustment'), 0) AS adjustments,
           round(coalesce(sum(l.amount * l.fee_rate), 0), 2) AS fees,
           coalesce(sum(l.amount) FILTER (WHERE l.kind = 'adjustment'), 0) AS adjusted_sales,
           row_number() OVER (PARTITION BY l.partner_id ORDER BY l.period) AS n
    FROM commission_lines l
    GROUP BY l.partner_id, l.period
), folded AS (
    SELECT m.*, 0::numeric AS carried_in FROM months m WHERE m.n = 1
    UNION ALL
    SELECT m.*, least(0, f.commission + f.adjustments + f.carried_in)
    FROM folded f JOIN months m ON m.partner_id = f.partner_id AND m.n = f.n + 1
), settled AS (
    SELECT f.*,
           p.kind = 'consignee' AS consignee,
           f.gross_sales - f.returns + f.adjusted_sales - f.commission - f.fees - f.adjustments AS settlement,
           coalesce((SELECT sum(r.amount) FROM commission_remittances r
                     WHERE r.partner_id = f.partner_id AND r.period = f.period), 0) AS remitted
    FROM folded f
    JOIN commission_partners p ON p.partner_id = f.partner_id
)
SELECT s.partner_id,
       s.period,
       s.gross_sales,
       s.returns,
       s.gross_sales - s.returns AS net_sales,
       s.commission,
       s.adjustments,
       CASE WHEN s.consignee THEN 0 ELSE s.carried_in END AS carried_in,
       CASE WHEN s.consignee THEN greatest(0, -s.settlement)
            ELSE greatest(0, s.commission + s.adjustments + s.carried_in) END AS total_due,
       CASE WHEN s.consignee THEN 0 ELSE least(0, s.commission + s.adjustments + s.carried_in) END AS carried_out,
       CASE WHEN s.consignee THEN s.fees END AS fees,
       CASE WHEN s.consignee THEN greatest(0, s.settlement) END AS remittance_due,
       CASE WHEN s.consignee THEN s.remitted END AS remitted,
       CASE WHEN s.consignee THEN greatest(0, s.settlement) - s.remitted END AS remittance_outstanding,
       s.adjusted_sales,
       CASE WHEN EXISTS (SELECT 1 FROM commission_periods c WHERE c.period >= s.period) THEN 'closed' ELSE 'open' END
           AS period_status
FROM settled s;
COMMENT ON VIEW commission_statements IS 'Every partner''s statement as it stands now; a consignee''s month settles once (remittance_due or total_due, never both) and carries nothing; a closed month (period_status) never changes again.';

-- 6. Findings: a dispute resolved by whoever raised it (impossible through the domain; the
--    finding proves it), beside the approvals of 0008 and 0017.
ALTER VIEW audit_findings RENAME TO audit_findings_0017;

CREATE VIEW audit_findings AS
SELECT * FROM audit_findings_0017
UNION ALL
SELECT 'approved_by_requester',
       a.stream_id,
       format('%s by %s, who also recorded %s', a.type, a.actor, r.type),
       ARRAY[r.position, a.position],
       company_date(a.recorded_at)
FROM audit_events a
JOIN audit_events r
  ON r.stream_id = a.stream_id AND r.type = 'CommissionDispute.Raised' AND r.position < a.position AND r.actor = a.actor
WHERE a.type = 'CommissionDispute.Resolved';

COMMENT ON VIEW audit_findings IS 'Findings of domain.md §7, with the positions of the events behind each.';
