-- depends: 0007.target-attainment
--
-- Findings the audit view raises on its own (domain.md §7), as a view over the read models,
-- so a BI tool reads them like a table and time-dependent ones (a probation now overdue) are
-- always current. Each row names the events behind it (`positions`).

CREATE VIEW audit_findings AS
-- An approval by the person who requested or prepared the thing (the domain refuses it; this
-- proves no approval slipped through).
SELECT 'approved_by_requester'::text AS kind,
       a.stream_id AS subject_id,
       format('%s by %s, who also recorded %s', a.type, a.actor, r.type) AS detail,
       ARRAY[r.position, a.position] AS positions,
       a.recorded_at::date AS raised_on
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
        least(date_trunc('month', approval.recorded_at) + interval '1 month',
              (SELECT date_trunc('month', min(first.visited_on)) FROM partner_visits first
               WHERE first.partner_id = d.partner_id)),
        date_trunc('month', current_date) - interval '1 month',
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
              (p.recorded_at::date - c.recorded_at::date)),
       ARRAY[c.position, p.position],
       p.recorded_at::date
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
       r.recorded_at::date
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
  AND (h.data ->> 'hired_on')::date + make_interval(months => (h.data ->> 'probation_months')::int) <= current_date
  AND NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.stream_id = h.stream_id
                  AND e.type IN ('Employee.Regularized', 'Employee.ProbationFailed', 'Employee.Dismissed'))

UNION ALL
-- A sales agent's rate at or above the lowest rate of an enterprise agent in force at the same time.
SELECT 'sales_agent_rate_not_below_enterprise_agents',
       s.contract_id,
       format('sales agent rate %s, enterprise agent rate %s', s.highest_rate, e.lowest_rate),
       ARRAY[(SELECT max(position) FROM audit_events WHERE stream_id = s.contract_id AND type = 'Contract.Signed'),
             (SELECT max(position) FROM audit_events WHERE stream_id = e.contract_id AND type = 'Contract.Signed')],
       current_date
FROM contracts_in_force s
JOIN contracts_in_force e ON e.partner_kind = 'enterprise_agent' AND e.during && s.during
WHERE s.partner_kind = 'sales_agent' AND s.highest_rate >= e.lowest_rate;

COMMENT ON VIEW audit_findings IS 'Findings of domain.md §7, with the positions of the events behind each.';
