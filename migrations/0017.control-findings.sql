-- depends: 0013.money 0014.contract-terms 0015.partner-contracts 0016.people-and-targets
--
-- The findings domain.md §7 added with the controls of issue 13, layered over the earlier
-- ones like 0009 and 0010 did. Each reads the audit trail (and the statements, for
-- remittances), names the positions of the events behind it, and is evaluated as of the
-- company's today where it waits for a date to pass. The sales-agent rate finding of 0008
-- compared each contract's terms on its last day; it is replaced here by one over the terms in
-- force on each day (contract_terms_in_force, 0014), the rule the command side applies.

-- The days a partner could not sell: from a suspension's `on` up to (not including) the
-- reinstatement's `on`, and every day after a termination's `on`. A suspension recorded
-- before `on` was a field of it reads as suspended from its recorded day.
CREATE VIEW partner_inactive_spans AS
SELECT s.stream_id AS partner_id,
       coalesce((s.data ->> 'on')::date, company_date(s.recorded_at)) AS from_on,
       (SELECT coalesce((r.data ->> 'on')::date, company_date(r.recorded_at))
        FROM audit_events r
        WHERE r.stream_id = s.stream_id AND r.type = 'Partner.Reinstated' AND r.position > s.position
        ORDER BY r.position LIMIT 1) AS until_on,
       s.position
FROM audit_events s
WHERE s.type = 'Partner.Suspended'
UNION ALL
SELECT t.stream_id, (t.data ->> 'on')::date + 1, NULL, t.position
FROM audit_events t
WHERE t.type = 'Partner.Terminated';
COMMENT ON VIEW partner_inactive_spans IS
    'Days a partner may not sell: from_on up to until_on (exclusive; null = for ever), with the event that began them.';

ALTER VIEW audit_findings RENAME TO audit_findings_0010;

CREATE VIEW audit_findings AS
SELECT * FROM audit_findings_0010 WHERE kind <> 'sales_agent_rate_not_below_enterprise_agents'

UNION ALL
-- A sales agent's rate at or above the lowest rate of an enterprise agent in force on the same
-- day, each side's terms as they stood on those days; the events behind it are the signatures
-- and approved amendments of both contracts.
SELECT DISTINCT ON (s.contract_id, e.contract_id)
       'sales_agent_rate_not_below_enterprise_agents',
       s.contract_id,
       format('sales agent rate %s, enterprise agent rate %s, both in force on %s', s.highest_rate, e.lowest_rate,
              lower(s.during * e.during)),
       ARRAY(SELECT position FROM audit_events
             WHERE stream_id IN (s.contract_id, e.contract_id) AND type IN ('Contract.Signed', 'Contract.Amended')
             ORDER BY position),
       company_today()
FROM contract_terms_in_force s
JOIN contract_terms_in_force e ON e.partner_kind = 'enterprise_agent' AND e.during && s.during
WHERE s.partner_kind = 'sales_agent' AND s.highest_rate >= e.lowest_rate

UNION ALL
-- The approvals added since 0008, each by someone other than who requested or prepared it.
SELECT 'approved_by_requester',
       a.stream_id,
       format('%s by %s, who also recorded %s', a.type, a.actor, r.type),
       ARRAY[r.position, a.position],
       company_date(a.recorded_at)
FROM audit_events a
JOIN (VALUES
        ('Contract.Amended', 'Contract.AmendmentRequested', 'amendment_id'),
        ('Contract.Renewed', 'Contract.RenewalRequested', 'renewal_id'),
        ('SalesTarget.Closed', 'SalesTarget.ResultsEntered', NULL),
        ('Partner.HousingSubsidyVerified', 'Partner.HousingSubsidyPrepared', 'period'),
        ('Partner.HousingSubsidyApproved', 'Partner.HousingSubsidyPrepared', 'period'),
        ('Partner.HousingSubsidyApproved', 'Partner.HousingSubsidyVerified', 'period'),
        ('Partner.PayoutAccountChangeRejected', 'Partner.PayoutAccountChangeRequested', 'change_id'),
        ('Employee.DismissalApproved', 'Employee.DismissalProposed', 'proposal_id')
     ) AS pair(approval, request, matching) ON a.type = pair.approval
JOIN audit_events r
  ON r.stream_id = a.stream_id AND r.type = pair.request AND r.position < a.position AND r.actor = a.actor
 AND (pair.matching IS NULL OR r.data ->> pair.matching = a.data ->> pair.matching)

UNION ALL
-- A sale or deal dated on a day its partner could not sell (the domain refuses it; this proves
-- none slipped through).
SELECT 'sale_while_partner_inactive',
       i.partner_id,
       format('%s %s dated %s, while the partner was %s', e.type, coalesce(e.data ->> 'order_id', e.data ->> 'deal_id'),
              e.effective_on, CASE WHEN i.until_on IS NULL AND t.type = 'Partner.Terminated' THEN 'terminated'
                                   ELSE 'suspended' END),
       ARRAY[i.position, e.position],
       company_date(e.recorded_at)
FROM partner_inactive_spans i
JOIN audit_events t ON t.position = i.position
JOIN LATERAL (
    SELECT sale.* FROM audit_events drafted
    JOIN audit_events sale ON sale.stream_id = drafted.stream_id AND sale.type = 'Contract.SaleRecorded'
    WHERE drafted.type = 'Contract.Drafted' AND drafted.data ->> 'partner_id' = i.partner_id::text
    UNION ALL
    SELECT deal.* FROM audit_events deal
    WHERE deal.stream_id = i.partner_id AND deal.type = 'Partner.DealClosed'
) e ON e.effective_on >= i.from_on AND (i.until_on IS NULL OR e.effective_on < i.until_on)

UNION ALL
-- A consignee month whose remittance is still outstanding after the 15th of the next month.
SELECT 'remittance_overdue',
       s.partner_id,
       format('%s: %s of %s still outstanding; due by %s', s.period, s.remittance_outstanding, s.remittance_due,
              (to_date(s.period, 'YYYY-MM') + interval '1 month' + interval '14 days')::date),
       ARRAY(SELECT l.position FROM commission_lines l
             WHERE l.partner_id = s.partner_id AND l.period = s.period ORDER BY l.position DESC LIMIT 1),
       (to_date(s.period, 'YYYY-MM') + interval '1 month' + interval '15 days')::date
FROM commission_statements s
WHERE s.remittance_outstanding > 0
  AND (to_date(s.period, 'YYYY-MM') + interval '1 month' + interval '14 days')::date < company_today()

UNION ALL
-- An active distributor or consignee with no inventory report in a full calendar month since
-- it became active (months it could not sell at all excepted).
SELECT 'inventory_report_missing',
       a.stream_id,
       format('no inventory report for %s', to_char(m.month, 'YYYY-MM')),
       ARRAY[a.position],
       (m.month + interval '1 month')::date
FROM audit_events a
JOIN audit_events applied ON applied.stream_id = a.stream_id AND applied.type = 'Partner.Applied'
CROSS JOIN LATERAL generate_series(
        date_trunc('month', coalesce((a.data ->> 'signed_on')::date, company_date(a.recorded_at))) + interval '1 month',
        date_trunc('month', company_today()) - interval '1 month',
        interval '1 month') AS m(month)
WHERE a.type = 'Partner.Activated'
  AND applied.data ->> 'kind' IN ('distributor', 'consignee')
  AND NOT EXISTS (SELECT 1 FROM audit_events r WHERE r.stream_id = a.stream_id AND r.type = 'Partner.InventoryReported'
                  AND date_trunc('month', (r.data ->> 'as_of')::date) = m.month)
  AND NOT EXISTS (SELECT 1 FROM partner_inactive_spans i WHERE i.partner_id = a.stream_id
                  AND i.from_on <= m.month::date
                  AND (i.until_on IS NULL OR i.until_on > (m.month + interval '1 month' - interval '1 day')::date))

UNION ALL
-- A poor evaluation (average below 60) with neither a corrective plan nor a termination
-- recorded within 30 days.
SELECT 'poor_evaluation_unaddressed',
       e.stream_id,
       format('%s averaged %s; no corrective plan or termination by %s', e.data ->> 'period', round(avg_score, 2),
              company_date(e.recorded_at + interval '30 days')),
       ARRAY[e.position],
       company_date(e.recorded_at + interval '30 days')
FROM audit_events e
CROSS JOIN LATERAL (SELECT avg(value::numeric) AS avg_score FROM jsonb_each_text(e.data -> 'scores')) s
WHERE e.type = 'Partner.Evaluated'
  AND s.avg_score < 60
  AND e.recorded_at + interval '30 days' < now()
  AND NOT EXISTS (SELECT 1 FROM audit_events f WHERE f.stream_id = e.stream_id
                  AND f.type IN ('Partner.CorrectivePlanRecorded', 'Partner.Terminated')
                  AND f.position > e.position AND f.recorded_at <= e.recorded_at + interval '30 days')

UNION ALL
-- A labour contract that reached its end without a renewal, and no separation recorded.
SELECT 'separation_missing',
       c.employee_id,
       format('labour contract ended on %s; no renewal and no separation recorded', c.contract_ends_on),
       ARRAY[c.position],
       c.contract_ends_on + 1
FROM employee_contracts c
WHERE c.status IN ('probation', 'regular')
  AND c.contract_ends_on < company_today()
  AND NOT EXISTS (SELECT 1 FROM audit_events s WHERE s.stream_id = c.employee_id AND s.type = 'Employee.Separated')

UNION ALL
-- A housing subsidy paid to a payout account changed within 30 days before the payment.
SELECT 'account_changed_before_subsidy',
       p.stream_id,
       format('housing subsidy for %s paid %s day(s) after the payout account changed', p.data ->> 'period',
              (company_date(p.recorded_at) - company_date(c.recorded_at))),
       ARRAY[c.position, p.position],
       company_date(p.recorded_at)
FROM audit_events p
JOIN audit_events c
  ON c.stream_id = p.stream_id AND c.type = 'Partner.PayoutAccountChangeApproved'
 AND c.position < p.position AND p.recorded_at - c.recorded_at < interval '30 days'
WHERE p.type = 'Partner.HousingSubsidyPaid';

COMMENT ON VIEW audit_findings IS 'Findings of domain.md §7, with the positions of the events behind each.';
