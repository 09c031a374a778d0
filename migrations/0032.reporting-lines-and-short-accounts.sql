-- depends: 0031.closed-month-payout-finding
--
-- Review of the reporting schema (issue 16):
-- 1. reporting.commission_lines was written before period close and disputes (0026): it had no
--    `moved_kind` or `dispute_id`, and its comments said an adjustment has no order, date or
--    amount — false for a sale, return or deal of a closed month carried into a later one. New
--    columns go at the end (a view's column order is a contract); the comments say what is true.
-- 2. An account of 4 characters or fewer was shown whole as its "last 4", where the API shows
--    only `****`: such an account is now null in the views.

CREATE OR REPLACE VIEW reporting.commission_lines AS
SELECT l.position AS event_position,
       l.line_no,
       l.event_id,
       l.partner_id,
       l.contract_id,
       l.period,
       (l.period || '-01')::date AS period_month,
       l.kind,
       l.order_id,
       l.business_date,
       l.amount::numeric(18, 2) AS amount,
       l.rate,
       l.commission::numeric(18, 2) AS commission,
       l.fee_rate,
       l.corrects_period,
       (l.corrects_period || '-01')::date AS corrects_period_month,
       l.recorded_at,
       public.company_date(l.recorded_at) AS recorded_on,
       l.moved_kind,
       l.dispute_id
FROM public.commission_lines l;
COMMENT ON VIEW reporting.commission_lines IS 'The commission ledger: one row per slice of a sale, return or broker deal at one rate, or per adjustment (a re-pricing, an upheld dispute, or a sale, return or deal of a closed month carried into the month it was recorded); rows are only ever added. A statement as known at a past time is its lines with recorded_at not later than that time.';
COMMENT ON COLUMN reporting.commission_lines.kind IS 'sale, return, deal or adjustment (moved_kind says what an adjustment carries, if anything).';
COMMENT ON COLUMN reporting.commission_lines.order_id IS 'The order (sales, returns, and adjustments carrying one) or deal id; else null.';
COMMENT ON COLUMN reporting.commission_lines.business_date IS 'The sale, return or deal date, also when an adjustment carries it; else null.';
COMMENT ON COLUMN reporting.commission_lines.amount IS 'CNY: the slice of the amount earning rate, negative for returns, also when an adjustment carries it (summed as the statement''s adjusted_sales); 0 for re-pricing and dispute adjustments.';
COMMENT ON COLUMN reporting.commission_lines.rate IS 'The rate the slice earns (0.03 = 3 %), also when an adjustment carries it; null for re-pricing and dispute adjustments.';
COMMENT ON COLUMN reporting.commission_lines.fee_rate IS 'A consignee contract''s fee rate (sales and returns, also carried ones); else null.';
COMMENT ON COLUMN reporting.commission_lines.moved_kind IS 'For an adjustment carrying a sale, return or deal of a closed month into the month it was recorded: sale, return or deal; else null.';
COMMENT ON COLUMN reporting.commission_lines.dispute_id IS 'For the adjustment an upheld dispute booked: the dispute (reporting.commission_disputes); else null.';

CREATE OR REPLACE VIEW reporting.commission_housing_subsidies AS
SELECT h.position AS event_position,
       h.event_id,
       h.partner_id,
       h.period,
       (h.period || '-01')::date AS period_month,
       h.step,
       h.amount::numeric(18, 2) AS amount,
       CASE WHEN length(regexp_replace(h.account, '\s', '', 'g')) > 4
            THEN right(regexp_replace(h.account, '\s', '', 'g'), 4) END AS account_last4,
       h.recorded_at,
       public.company_date(h.recorded_at) AS recorded_on
FROM public.commission_housing_subsidies h;
COMMENT ON COLUMN reporting.commission_housing_subsidies.account_last4 IS 'The last 4 characters of the payout account (prepared and paid steps); null otherwise, and for an account of 4 characters or fewer (it would be the whole account). The full account is for finance, over the API.';

CREATE OR REPLACE VIEW reporting.payout_register AS
SELECT r.partner_id,
       p.name AS partner_name,
       p.kind AS partner_kind,
       r.period,
       (r.period || '-01')::date AS period_month,
       r.kind,
       r.amount::numeric(18, 2) AS amount,
       CASE WHEN length(regexp_replace(r.account, '\s', '', 'g')) > 4
            THEN right(regexp_replace(r.account, '\s', '', 'g'), 4) END AS account_last4,
       r.status,
       r.prepared_by,
       r.prepared_at,
       r.verified_by,
       r.verified_at,
       r.approved_by,
       r.approved_at,
       r.paid_by,
       r.paid_at,
       r.paid_on,
       r.position AS event_position,
       r.event_id
FROM public.report_payouts r
LEFT JOIN public.report_partners p ON p.partner_id = r.partner_id;
COMMENT ON COLUMN reporting.payout_register.account_last4 IS 'The last 4 characters of the approved payout account (a housing subsidy''s: as paid, once paid); null when none was recorded, and for an account of 4 characters or fewer (it would be the whole account). The full account is for finance, over the API.';
