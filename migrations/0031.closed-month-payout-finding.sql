-- depends: 0030.reporting-views-for-reports
--
-- A payout is checked against the statement's total due when it is prepared
-- (`payout_not_total_due`, 0013). A line dated in the month and recorded after that — a late
-- sale of a month that has ended but is not yet closed — raises the month's total due, and the
-- close goes through because a payout is prepared (api.md: the close asks that one is, not for
-- how much). Once the month is closed nothing can be prepared for it, so the difference would be
-- owed in silence. The same finding now also names a closed month whose prepared payout
-- differs from the total due it closed with, at the close's date, with both events.
ALTER VIEW audit_findings RENAME TO audit_findings_0026;

CREATE VIEW audit_findings AS
SELECT * FROM audit_findings_0026
UNION ALL
SELECT 'payout_not_total_due',
       o.partner_id,
       format('payout for %s prepared for %s; the month closed with a total due of %s, booked after the payout was prepared',
              o.period, o.amount, s.total_due),
       ARRAY[o.position, c.position],
       company_date(c.closed_at)
FROM commission_payouts o
JOIN commission_statements s ON s.partner_id = o.partner_id AND s.period = o.period
JOIN LATERAL (SELECT p.position, p.closed_at FROM commission_periods p
              WHERE p.period >= o.period ORDER BY p.period LIMIT 1) AS c ON true
WHERE o.step = 'prepared' AND o.amount = o.total_due AND s.total_due <> o.amount;

COMMENT ON VIEW audit_findings IS 'Findings of domain.md §7, with the positions of the events behind each.';
