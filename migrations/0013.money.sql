-- depends: 0012.speed
--
-- Issue 13, money: consignee remittances and housing subsidies on the statements, and a
-- consignee's month settled once (domain.md §6): S = proceeds − commission − fees − adjustments,
-- remitted by the consignee when S ≥ 0, paid by the company when S < 0, nothing carried.

CREATE TABLE commission_remittances (
    position     bigint      PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    partner_id   uuid        NOT NULL,
    period       text        NOT NULL,
    amount       numeric     NOT NULL,
    received_on  date        NOT NULL,
    recorded_at  timestamptz NOT NULL
);
CREATE INDEX commission_remittances_partner_idx ON commission_remittances (partner_id, period, position);
COMMENT ON TABLE commission_remittances IS 'One row per Partner.RemittanceReceived: a consignee''s remittance for the month it pays for.';

CREATE TABLE commission_housing_subsidies (
    position     bigint      PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    partner_id   uuid        NOT NULL,
    period       text        NOT NULL,
    step         text        NOT NULL CHECK (step IN ('prepared', 'verified', 'approved', 'paid')),
    amount       numeric,
    account      text,
    recorded_at  timestamptz NOT NULL
);
CREATE INDEX commission_housing_subsidies_partner_idx ON commission_housing_subsidies (partner_id, period, position);
COMMENT ON TABLE commission_housing_subsidies IS 'One row per housing-subsidy step of a partner and month; never part of total_due.';
COMMENT ON COLUMN commission_housing_subsidies.amount IS 'On the prepared step (and a grant from before issue 13, read as prepared).';
COMMENT ON COLUMN commission_housing_subsidies.account IS 'On the prepared and paid steps: the approved payout account.';

DROP VIEW commission_statements;
CREATE VIEW commission_statements AS
WITH RECURSIVE months AS (
    SELECT l.partner_id,
           l.period,
           coalesce(sum(l.amount) FILTER (WHERE l.kind IN ('sale', 'deal')), 0) AS gross_sales,
           coalesce(-sum(l.amount) FILTER (WHERE l.kind = 'return'), 0) AS returns,
           coalesce(sum(l.commission) FILTER (WHERE l.kind <> 'adjustment'), 0) AS commission,
           coalesce(sum(l.commission) FILTER (WHERE l.kind = 'adjustment'), 0) AS adjustments,
           round(coalesce(sum(l.amount * l.fee_rate), 0), 2) AS fees,
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
           f.gross_sales - f.returns - f.commission - f.fees - f.adjustments AS settlement,
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
       CASE WHEN s.consignee THEN greatest(0, s.settlement) - s.remitted END AS remittance_outstanding
FROM settled s;
COMMENT ON VIEW commission_statements IS 'Every partner''s statement as it stands now; a consignee''s month settles once (remittance_due or total_due, never both) and carries nothing.';


-- The company keeps Beijing time (domain.md): the day a time was recorded, and today, are read
-- in its zone — `channel_domain.time_zone` when a session or the database sets it (the service
-- sets it from CHANNEL_DOMAIN_TIME_ZONE on each connection), else Asia/Shanghai, whatever the
-- server's own TimeZone.
CREATE FUNCTION company_time_zone() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(nullif(current_setting('channel_domain.time_zone', true), ''), 'Asia/Shanghai')
$$;
CREATE FUNCTION company_date(moment timestamptz) RETURNS date LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT (moment AT TIME ZONE company_time_zone())::date
$$;
CREATE FUNCTION company_today() RETURNS date LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT company_date(now())
$$;

-- The findings of 0008 and 0010, with recorded days and today on the company's calendar.
CREATE OR REPLACE VIEW audit_findings_0008 AS
-- An approval by the person who requested or prepared the thing (the domain refuses it; this
-- proves no approval slipped through).
SELECT 'approved_by_requester'::text AS kind,
       a.stream_id AS subject_id,
       format('%s by %s, who also recorded %s', a.type, a.actor, r.type) AS detail,
       ARRAY[r.position, a.position] AS positions,
       company_date(a.recorded_at) AS raised_on
FROM audit_events a
JOIN (VALUES
        ('Contract.Approved', 'Contract.Drafted', NULL),
        ('Contract.Approved', 'Contract.Submitted', NULL),
        ('Partner.Reviewed', 'Partner.Applied', NULL),
        ('Partner.PayoutVerified', 'Partner.PayoutPrepared', 'period'),
        ('Partner.PayoutApproved', 'Partner.PayoutPrepared', 'period'),
        ('Partner.PayoutApproved', 'Partner.PayoutVerified', 'period'),
        ('Partner.PayoutAccountChangeApproved', 'Partner.PayoutAccountChangeRequested', 'change_id'),
        ('Partner.DepositRefunded', 'Partner.Terminated', NULL),
        ('SalesTarget.RevisionApproved', 'SalesTarget.RevisionRequested', 'revision_id'),
        ('SalesTarget.RevisionApproved', 'SalesTarget.Set', NULL)
     ) AS pair(approval, request, matching) ON a.type = pair.approval
JOIN audit_events r
  ON r.stream_id = a.stream_id AND r.type = pair.request AND r.position < a.position AND r.actor = a.actor
 AND (pair.matching IS NULL OR r.data ->> pair.matching = a.data ->> pair.matching)

UNION ALL
-- A direct store below its monthly visit minimum, for each full month since its approval (or
-- since its first recorded visit, when visits were recorded for earlier months).
SELECT 'visits_below_minimum',
       d.partner_id,
       format('%s visit(s) in %s; a grade %s store needs %s', count(v.position), to_char(m.month, 'YYYY-MM'),
              d.grade, CASE WHEN d.grade IN ('A', 'B') THEN 5 ELSE 2 END),
       array_remove(array_agg(v.position ORDER BY v.position), NULL) || ARRAY[max(approval.position)],
       (m.month + interval '1 month')::date
FROM partner_directory d
JOIN audit_events approval
  ON approval.stream_id = d.partner_id AND approval.type = 'Partner.Reviewed' AND approval.data ->> 'decision' = 'approve'
CROSS JOIN LATERAL generate_series(
        least(date_trunc('month', company_date(approval.recorded_at)) + interval '1 month',
              (SELECT date_trunc('month', min(first.visited_on)) FROM partner_visits first
               WHERE first.partner_id = d.partner_id)),
        date_trunc('month', company_today()) - interval '1 month',
        interval '1 month') AS m(month)
LEFT JOIN partner_visits v
  ON v.partner_id = d.partner_id AND date_trunc('month', v.visited_on) = m.month
WHERE d.kind = 'direct_store'
  AND NOT EXISTS (SELECT 1 FROM audit_events t WHERE t.stream_id = d.partner_id AND t.type = 'Partner.Terminated'
                  AND (t.data ->> 'on')::date < m.month)
GROUP BY d.partner_id, d.grade, m.month
HAVING count(v.position) < CASE WHEN d.grade IN ('A', 'B') THEN 5 ELSE 2 END

UNION ALL
-- A payout account changed within 30 days before a payout was prepared to it.
SELECT 'account_changed_before_payout',
       p.stream_id,
       format('payout for %s prepared %s day(s) after the payout account changed', p.data ->> 'period',
              (company_date(p.recorded_at) - company_date(c.recorded_at))),
       ARRAY[c.position, p.position],
       company_date(p.recorded_at)
FROM audit_events p
JOIN audit_events c
  ON c.stream_id = p.stream_id AND c.type = 'Partner.PayoutAccountChangeApproved'
 AND c.position < p.position AND p.recorded_at - c.recorded_at < interval '30 days'
WHERE p.type = 'Partner.PayoutPrepared'

UNION ALL
-- A deposit refunded while the partner is not terminated.
SELECT 'deposit_refunded_before_termination',
       r.stream_id,
       format('deposit of %s refunded on %s before any termination', r.data ->> 'amount', r.data ->> 'on'),
       ARRAY[r.position],
       company_date(r.recorded_at)
FROM audit_events r
WHERE r.type = 'Partner.DepositRefunded'
  AND NOT EXISTS (SELECT 1 FROM audit_events t WHERE t.stream_id = r.stream_id AND t.type = 'Partner.Terminated'
                  AND t.position < r.position)

UNION ALL
-- An employee past the end of their probation with neither regularization nor failure recorded.
SELECT 'probation_overdue',
       h.stream_id,
       format('probation ended on %s; nothing recorded since',
              ((h.data ->> 'hired_on')::date + make_interval(months => (h.data ->> 'probation_months')::int)
               - interval '1 day')::date),
       ARRAY[h.position],
       ((h.data ->> 'hired_on')::date + make_interval(months => (h.data ->> 'probation_months')::int))::date
FROM audit_events h
WHERE h.type = 'Employee.Hired'
  AND (h.data ->> 'probation_months')::int > 0
  AND (h.data ->> 'hired_on')::date + make_interval(months => (h.data ->> 'probation_months')::int) <= company_today()
  AND NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.stream_id = h.stream_id
                  AND e.type IN ('Employee.Regularized', 'Employee.ProbationFailed', 'Employee.Dismissed'))

UNION ALL
-- A sales agent's rate at or above the lowest rate of an enterprise agent in force at the same time.
SELECT 'sales_agent_rate_not_below_enterprise_agents',
       s.contract_id,
       format('sales agent rate %s, enterprise agent rate %s', s.highest_rate, e.lowest_rate),
       ARRAY[(SELECT max(position) FROM audit_events WHERE stream_id = s.contract_id AND type = 'Contract.Signed'),
             (SELECT max(position) FROM audit_events WHERE stream_id = e.contract_id AND type = 'Contract.Signed')],
       company_today()
FROM contracts_in_force s
JOIN contracts_in_force e ON e.partner_kind = 'enterprise_agent' AND e.during && s.during
WHERE s.partner_kind = 'sales_agent' AND s.highest_rate >= e.lowest_rate;

CREATE OR REPLACE VIEW audit_findings AS
SELECT * FROM audit_findings_0009
UNION ALL
-- A payout prepared for another amount than the statement's total due when it was prepared.
SELECT 'payout_not_total_due',
       o.partner_id,
       format('payout for %s prepared for %s; the statement''s total due was %s', o.period, o.amount, o.total_due),
       ARRAY[o.position],
       company_date(o.recorded_at)
FROM commission_payouts o
WHERE o.step = 'prepared' AND o.amount <> o.total_due;
