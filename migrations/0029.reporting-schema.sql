-- depends: 0024.webhook-waiting-lines
--
-- Issue 16, part 5: the read models for BI tools that read PostgreSQL directly, as documented,
-- stable views in a schema of their own, `reporting` (api.md). A view is a contract: English
-- column names, money as numeric(18,2), rates as numeric, days as date, a month as its `YYYY-MM`
-- label and as the date of its first day (`period_month`), every row's event as `event_position`
-- and `event_id`. Every view and every column carries a COMMENT (tests/api/test_reporting_schema.py
-- checks that none is missing, whatever views exist).
--
-- What is NOT here, on purpose: the events and the audit trail (auditor-only; employees' personal
-- fields are sealed in them), audit findings (auditor-only), API tokens, personal-data keys,
-- webhook subscriptions (their secrets and URLs) and delivery lines, idempotency outcomes,
-- keyed-import lines, snapshots and relay checkpoints. Payout accounts show only their last 4
-- characters, as for every role but finance.
--
-- Who may read: `channel-domain reporting-role NAME` (docs/read-models.md). The views run with
-- their owner's rights, so a reporting role needs no grant on any table. `reporting_grant_access()`
-- (below) grants SELECT on every view here to this database's reporting group; `channel-domain
-- migrate` calls it after every run, so a view a later migration adds is readable at once.
--
-- Adding a view: CREATE VIEW reporting.x …, COMMENT ON VIEW and on every column, in a migration
-- (docs/read-models.md, "Adding a view", says the rest).

CREATE SCHEMA reporting;
COMMENT ON SCHEMA reporting IS 'channel-domain read models for BI tools: documented, stable views (docs/read-models.md, "Reporting schema for BI tools"). Read with a role made by `channel-domain reporting-role NAME`.';

-- Commissions ---------------------------------------------------------------------------------

CREATE VIEW reporting.commission_statements AS
SELECT s.partner_id,
       s.period,
       (s.period || '-01')::date AS period_month,
       s.gross_sales::numeric(18, 2) AS gross_sales,
       s.returns::numeric(18, 2) AS returns,
       s.net_sales::numeric(18, 2) AS net_sales,
       s.commission::numeric(18, 2) AS commission,
       s.adjustments::numeric(18, 2) AS adjustments,
       s.carried_in::numeric(18, 2) AS carried_in,
       s.total_due::numeric(18, 2) AS total_due,
       s.carried_out::numeric(18, 2) AS carried_out,
       s.fees::numeric(18, 2) AS fees,
       s.remittance_due::numeric(18, 2) AS remittance_due,
       s.remitted::numeric(18, 2) AS remitted,
       s.remittance_outstanding::numeric(18, 2) AS remittance_outstanding,
       CASE WHEN s.remittance_due IS NOT NULL
            THEN ((s.period || '-15')::date + interval '1 month')::date END AS remittance_due_on
FROM public.commission_statements s;
COMMENT ON VIEW reporting.commission_statements IS 'Every partner''s commission statement as it stands now: one row per partner and month with lines (domain.md §6). A consignee''s month settles once: remittance_due or total_due, never both.';
COMMENT ON COLUMN reporting.commission_statements.partner_id IS 'The partner whose statement it is.';
COMMENT ON COLUMN reporting.commission_statements.period IS 'The month, YYYY-MM.';
COMMENT ON COLUMN reporting.commission_statements.period_month IS 'The month as the date of its first day.';
COMMENT ON COLUMN reporting.commission_statements.gross_sales IS 'CNY: sales and broker deals booked in the month.';
COMMENT ON COLUMN reporting.commission_statements.returns IS 'CNY: returns booked in the month, as a positive amount.';
COMMENT ON COLUMN reporting.commission_statements.net_sales IS 'CNY: gross_sales - returns.';
COMMENT ON COLUMN reporting.commission_statements.commission IS 'CNY: commission of the month''s sale, return and deal lines.';
COMMENT ON COLUMN reporting.commission_statements.adjustments IS 'CNY: adjustment lines booked in the month (they may correct other months).';
COMMENT ON COLUMN reporting.commission_statements.carried_in IS 'CNY: negative balance brought from earlier months (0 or less; always 0 for consignees).';
COMMENT ON COLUMN reporting.commission_statements.total_due IS 'CNY the company owes the partner for the month: max(0, commission + adjustments + carried_in); for a consignee max(0, -settlement).';
COMMENT ON COLUMN reporting.commission_statements.carried_out IS 'CNY: the negative balance carried to the next month (0 or less; always 0 for consignees).';
COMMENT ON COLUMN reporting.commission_statements.fees IS 'CNY, consignees only: fee_rate x net proceeds, rounded once per month; null for other partners.';
COMMENT ON COLUMN reporting.commission_statements.remittance_due IS 'CNY, consignees only: what the consignee owes for the month, max(0, settlement); null for other partners.';
COMMENT ON COLUMN reporting.commission_statements.remitted IS 'CNY, consignees only: remittances received for the month; null for other partners.';
COMMENT ON COLUMN reporting.commission_statements.remittance_outstanding IS 'CNY, consignees only: remittance_due - remitted (negative when overpaid); null for other partners.';
COMMENT ON COLUMN reporting.commission_statements.remittance_due_on IS 'Consignees only: the day the month''s remittance is due, the 15th of the following month; null for other partners.';

CREATE VIEW reporting.commission_lines AS
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
       public.company_date(l.recorded_at) AS recorded_on
FROM public.commission_lines l;
COMMENT ON VIEW reporting.commission_lines IS 'The commission ledger: one row per slice of a sale, return or broker deal at one rate, or per adjustment; rows are only ever added. A statement as known at a past time is its lines with recorded_at not later than that time.';
COMMENT ON COLUMN reporting.commission_lines.event_position IS 'Global position of the event the line came from (with line_no, the key).';
COMMENT ON COLUMN reporting.commission_lines.line_no IS 'The line''s number within its event.';
COMMENT ON COLUMN reporting.commission_lines.event_id IS 'Stable id of the event the line came from.';
COMMENT ON COLUMN reporting.commission_lines.partner_id IS 'Whose statement the line is on.';
COMMENT ON COLUMN reporting.commission_lines.contract_id IS 'The contract; null for a broker''s deal.';
COMMENT ON COLUMN reporting.commission_lines.period IS 'The statement''s month, YYYY-MM.';
COMMENT ON COLUMN reporting.commission_lines.period_month IS 'The statement''s month as the date of its first day.';
COMMENT ON COLUMN reporting.commission_lines.kind IS 'sale, return, deal or adjustment.';
COMMENT ON COLUMN reporting.commission_lines.order_id IS 'The order (sales, returns) or deal id; null for adjustments.';
COMMENT ON COLUMN reporting.commission_lines.business_date IS 'The sale, return or deal date; null for adjustments.';
COMMENT ON COLUMN reporting.commission_lines.amount IS 'CNY: the slice of the amount earning rate; negative for returns; 0 for adjustments.';
COMMENT ON COLUMN reporting.commission_lines.rate IS 'The rate the slice earns (0.03 = 3 %); null for adjustments.';
COMMENT ON COLUMN reporting.commission_lines.commission IS 'CNY: amount x rate rounded half up to the cent (negative for returns), or the adjustment.';
COMMENT ON COLUMN reporting.commission_lines.fee_rate IS 'A consignee contract''s fee rate (sales and returns); else null.';
COMMENT ON COLUMN reporting.commission_lines.corrects_period IS 'Adjustments: the month corrected, YYYY-MM; else null.';
COMMENT ON COLUMN reporting.commission_lines.corrects_period_month IS 'Adjustments: the month corrected as the date of its first day; else null.';
COMMENT ON COLUMN reporting.commission_lines.recorded_at IS 'When the event was recorded (UTC timestamp).';
COMMENT ON COLUMN reporting.commission_lines.recorded_on IS 'The company-calendar day (Asia/Shanghai by default) the event was recorded.';

CREATE VIEW reporting.commission_payouts AS
SELECT p.position AS event_position,
       p.event_id,
       p.partner_id,
       p.period,
       (p.period || '-01')::date AS period_month,
       p.step,
       p.amount::numeric(18, 2) AS amount,
       p.total_due::numeric(18, 2) AS total_due,
       p.recorded_at,
       public.company_date(p.recorded_at) AS recorded_on
FROM public.commission_payouts p;
COMMENT ON VIEW reporting.commission_payouts IS 'One row per commission payout step of a partner and month: prepared, then verified by finance, approved by the general manager, paid.';
COMMENT ON COLUMN reporting.commission_payouts.event_position IS 'Global position of the payout event (the key).';
COMMENT ON COLUMN reporting.commission_payouts.event_id IS 'Stable id of the payout event.';
COMMENT ON COLUMN reporting.commission_payouts.partner_id IS 'The partner paid.';
COMMENT ON COLUMN reporting.commission_payouts.period IS 'The month the payout is for, YYYY-MM.';
COMMENT ON COLUMN reporting.commission_payouts.period_month IS 'The month as the date of its first day.';
COMMENT ON COLUMN reporting.commission_payouts.step IS 'prepared, verified, approved or paid.';
COMMENT ON COLUMN reporting.commission_payouts.amount IS 'CNY prepared (on the prepared step only; else null).';
COMMENT ON COLUMN reporting.commission_payouts.total_due IS 'CNY: the statement''s total_due when the payout was prepared (prepared step only; else null).';
COMMENT ON COLUMN reporting.commission_payouts.recorded_at IS 'When the step was recorded (UTC timestamp).';
COMMENT ON COLUMN reporting.commission_payouts.recorded_on IS 'The company-calendar day the step was recorded.';

CREATE VIEW reporting.commission_housing_subsidies AS
SELECT h.position AS event_position,
       h.event_id,
       h.partner_id,
       h.period,
       (h.period || '-01')::date AS period_month,
       h.step,
       h.amount::numeric(18, 2) AS amount,
       right(regexp_replace(h.account, '\s', '', 'g'), 4) AS account_last4,
       h.recorded_at,
       public.company_date(h.recorded_at) AS recorded_on
FROM public.commission_housing_subsidies h;
COMMENT ON VIEW reporting.commission_housing_subsidies IS 'One row per housing-subsidy step of a social-channel partner and month (prepared, verified, approved, paid); never part of total_due.';
COMMENT ON COLUMN reporting.commission_housing_subsidies.event_position IS 'Global position of the subsidy event (the key).';
COMMENT ON COLUMN reporting.commission_housing_subsidies.event_id IS 'Stable id of the subsidy event.';
COMMENT ON COLUMN reporting.commission_housing_subsidies.partner_id IS 'The partner subsidised.';
COMMENT ON COLUMN reporting.commission_housing_subsidies.period IS 'The month the subsidy is for, YYYY-MM.';
COMMENT ON COLUMN reporting.commission_housing_subsidies.period_month IS 'The month as the date of its first day.';
COMMENT ON COLUMN reporting.commission_housing_subsidies.step IS 'prepared, verified, approved or paid.';
COMMENT ON COLUMN reporting.commission_housing_subsidies.amount IS 'CNY (on the prepared step only; else null).';
COMMENT ON COLUMN reporting.commission_housing_subsidies.account_last4 IS 'The last 4 characters of the payout account (prepared and paid steps; else null). The full account is for finance, over the API.';
COMMENT ON COLUMN reporting.commission_housing_subsidies.recorded_at IS 'When the step was recorded (UTC timestamp).';
COMMENT ON COLUMN reporting.commission_housing_subsidies.recorded_on IS 'The company-calendar day the step was recorded.';

CREATE VIEW reporting.commission_remittances AS
SELECT r.position AS event_position,
       r.event_id,
       r.partner_id,
       r.period,
       (r.period || '-01')::date AS period_month,
       r.amount::numeric(18, 2) AS amount,
       r.received_on,
       ((r.period || '-15')::date + interval '1 month')::date AS due_on,
       r.recorded_at
FROM public.commission_remittances r;
COMMENT ON VIEW reporting.commission_remittances IS 'One row per remittance a consignee handed over for a month (Partner.RemittanceReceived).';
COMMENT ON COLUMN reporting.commission_remittances.event_position IS 'Global position of the event (the key).';
COMMENT ON COLUMN reporting.commission_remittances.event_id IS 'Stable id of the event.';
COMMENT ON COLUMN reporting.commission_remittances.partner_id IS 'The consignee.';
COMMENT ON COLUMN reporting.commission_remittances.period IS 'The month the remittance pays for, YYYY-MM.';
COMMENT ON COLUMN reporting.commission_remittances.period_month IS 'That month as the date of its first day.';
COMMENT ON COLUMN reporting.commission_remittances.amount IS 'CNY received.';
COMMENT ON COLUMN reporting.commission_remittances.received_on IS 'The day finance received it.';
COMMENT ON COLUMN reporting.commission_remittances.due_on IS 'The day the month''s remittance is due: the 15th of the following month.';
COMMENT ON COLUMN reporting.commission_remittances.recorded_at IS 'When it was recorded (UTC timestamp).';

CREATE VIEW reporting.commission_terms AS
SELECT t.position AS event_position,
       t.event_id,
       t.contract_id,
       t.effective_on,
       t.terms ->> 'type' AS terms_type,
       t.terms,
       t.recorded_at
FROM public.commission_terms t;
COMMENT ON VIEW reporting.commission_terms IS 'Each contract''s commission terms: as drafted, then each approved amendment from its effective date.';
COMMENT ON COLUMN reporting.commission_terms.event_position IS 'Global position of the draft or amendment-approval event (the key).';
COMMENT ON COLUMN reporting.commission_terms.event_id IS 'Stable id of that event.';
COMMENT ON COLUMN reporting.commission_terms.contract_id IS 'The contract.';
COMMENT ON COLUMN reporting.commission_terms.effective_on IS 'The day an amendment takes effect; null for the terms the contract was drafted with.';
COMMENT ON COLUMN reporting.commission_terms.terms_type IS 'flat or tiered.';
COMMENT ON COLUMN reporting.commission_terms.terms IS 'The terms as in the API (JSON): {"type": "flat", "rate": "0.03"} or {"type": "tiered", "tiers": [{"up_to": "100000.00", "rate": "0.03"}, {"rate": "0.045"}]}.';
COMMENT ON COLUMN reporting.commission_terms.recorded_at IS 'When the terms were recorded (UTC timestamp).';

-- Partners and contracts ---------------------------------------------------------------------

CREATE VIEW reporting.partner_directory AS
SELECT d.partner_id,
       d.kind,
       d.grade,
       d.parent_partner_id,
       d.position AS event_position,
       d.event_id
FROM public.partner_directory d;
COMMENT ON VIEW reporting.partner_directory IS 'Every partner that applied: its kind, grade and parent.';
COMMENT ON COLUMN reporting.partner_directory.partner_id IS 'The partner (the key).';
COMMENT ON COLUMN reporting.partner_directory.kind IS 'enterprise_agent, sales_agent, consignee, broker, distributor, retailer or direct_store.';
COMMENT ON COLUMN reporting.partner_directory.grade IS 'A, B, C or D for a direct store (monthly visit minimum A/B 5, C/D 2); else null.';
COMMENT ON COLUMN reporting.partner_directory.parent_partner_id IS 'The first-tier agent of a second-tier agent; else null.';
COMMENT ON COLUMN reporting.partner_directory.event_position IS 'Global position of the Partner.Applied event.';
COMMENT ON COLUMN reporting.partner_directory.event_id IS 'Stable id of the Partner.Applied event.';

CREATE VIEW reporting.contract_directory AS
SELECT d.contract_id,
       d.partner_id,
       d.position AS event_position,
       d.event_id
FROM public.contract_directory d;
COMMENT ON VIEW reporting.contract_directory IS 'Every contract drafted, and its partner.';
COMMENT ON COLUMN reporting.contract_directory.contract_id IS 'The contract (the key).';
COMMENT ON COLUMN reporting.contract_directory.partner_id IS 'Its partner.';
COMMENT ON COLUMN reporting.contract_directory.event_position IS 'Global position of the Contract.Drafted event.';
COMMENT ON COLUMN reporting.contract_directory.event_id IS 'Stable id of the Contract.Drafted event.';

CREATE VIEW reporting.contracts_in_force AS
SELECT c.contract_id,
       c.partner_id,
       c.partner_kind,
       lower(c.during) AS starts_on,
       upper(c.during) - 1 AS ends_on,
       c.territory,
       c.lowest_rate,
       c.highest_rate
FROM public.contracts_in_force c;
COMMENT ON VIEW reporting.contracts_in_force IS 'One row per signed contract: the days it is in force, its territory and its rates on its last day.';
COMMENT ON COLUMN reporting.contracts_in_force.contract_id IS 'The contract (the key).';
COMMENT ON COLUMN reporting.contracts_in_force.partner_id IS 'Its partner.';
COMMENT ON COLUMN reporting.contracts_in_force.partner_kind IS 'The partner''s kind.';
COMMENT ON COLUMN reporting.contracts_in_force.starts_on IS 'The first day in force; null when it ended on its first day.';
COMMENT ON COLUMN reporting.contracts_in_force.ends_on IS 'The last day in force (after renewals and terminations); null when it ended on its first day.';
COMMENT ON COLUMN reporting.contracts_in_force.territory IS 'An enterprise agent''s region; else null.';
COMMENT ON COLUMN reporting.contracts_in_force.lowest_rate IS 'The lowest commission rate of its terms on its last day.';
COMMENT ON COLUMN reporting.contracts_in_force.highest_rate IS 'The highest commission rate of its terms on its last day.';

CREATE VIEW reporting.contract_terms_in_force AS
SELECT t.contract_id,
       t.partner_kind,
       lower(t.during) AS starts_on,
       upper(t.during) - 1 AS ends_on,
       t.lowest_rate,
       t.highest_rate
FROM public.contract_terms_in_force t;
COMMENT ON VIEW reporting.contract_terms_in_force IS 'Every version of a signed contract''s commission terms over the days it applied while in force.';
COMMENT ON COLUMN reporting.contract_terms_in_force.contract_id IS 'The contract.';
COMMENT ON COLUMN reporting.contract_terms_in_force.partner_kind IS 'The partner''s kind.';
COMMENT ON COLUMN reporting.contract_terms_in_force.starts_on IS 'The first day this version applied.';
COMMENT ON COLUMN reporting.contract_terms_in_force.ends_on IS 'The last day this version applied.';
COMMENT ON COLUMN reporting.contract_terms_in_force.lowest_rate IS 'The lowest rate of this version.';
COMMENT ON COLUMN reporting.contract_terms_in_force.highest_rate IS 'The highest rate of this version.';

CREATE VIEW reporting.partner_visits AS
SELECT v.position AS event_position,
       v.event_id,
       v.partner_id,
       v.visited_on,
       v.employee_id
FROM public.partner_visits v;
COMMENT ON VIEW reporting.partner_visits IS 'One row per visit to a partner (Partner.Visited).';
COMMENT ON COLUMN reporting.partner_visits.event_position IS 'Global position of the event (the key).';
COMMENT ON COLUMN reporting.partner_visits.event_id IS 'Stable id of the event.';
COMMENT ON COLUMN reporting.partner_visits.partner_id IS 'The partner visited.';
COMMENT ON COLUMN reporting.partner_visits.visited_on IS 'The day of the visit.';
COMMENT ON COLUMN reporting.partner_visits.employee_id IS 'The employee who visited.';

CREATE VIEW reporting.partner_orders AS
SELECT o.position AS event_position,
       o.event_id,
       o.partner_id,
       o.contract_id,
       o.order_id,
       o.sold_on,
       o.amount::numeric(18, 2) AS amount,
       o.employee_id
FROM public.partner_orders o;
COMMENT ON VIEW reporting.partner_orders IS 'One row per sale (Contract.SaleRecorded).';
COMMENT ON COLUMN reporting.partner_orders.event_position IS 'Global position of the event (the key).';
COMMENT ON COLUMN reporting.partner_orders.event_id IS 'Stable id of the event.';
COMMENT ON COLUMN reporting.partner_orders.partner_id IS 'The partner who sold.';
COMMENT ON COLUMN reporting.partner_orders.contract_id IS 'The contract the sale is recorded against.';
COMMENT ON COLUMN reporting.partner_orders.order_id IS 'The order (unique per contract).';
COMMENT ON COLUMN reporting.partner_orders.sold_on IS 'The sale date.';
COMMENT ON COLUMN reporting.partner_orders.amount IS 'CNY sold.';
COMMENT ON COLUMN reporting.partner_orders.employee_id IS 'The employee credited, if any.';

CREATE VIEW reporting.partner_returns AS
SELECT r.position AS event_position,
       r.event_id,
       r.partner_id,
       r.contract_id,
       r.order_id,
       r.returned_on,
       r.amount::numeric(18, 2) AS amount,
       r.employee_id
FROM public.partner_returns r;
COMMENT ON VIEW reporting.partner_returns IS 'One row per return (Contract.ReturnRecorded), credited like the order returned.';
COMMENT ON COLUMN reporting.partner_returns.event_position IS 'Global position of the event (the key).';
COMMENT ON COLUMN reporting.partner_returns.event_id IS 'Stable id of the event.';
COMMENT ON COLUMN reporting.partner_returns.partner_id IS 'The partner whose order is returned.';
COMMENT ON COLUMN reporting.partner_returns.contract_id IS 'The contract of the order returned.';
COMMENT ON COLUMN reporting.partner_returns.order_id IS 'The order returned.';
COMMENT ON COLUMN reporting.partner_returns.returned_on IS 'The return date.';
COMMENT ON COLUMN reporting.partner_returns.amount IS 'CNY returned (positive).';
COMMENT ON COLUMN reporting.partner_returns.employee_id IS 'The employee credited with the original order, if any.';

CREATE VIEW reporting.partner_inactive_spans AS
SELECT s.partner_id,
       s.from_on,
       s.until_on,
       s.position AS event_position
FROM public.partner_inactive_spans s;
COMMENT ON VIEW reporting.partner_inactive_spans IS 'The days a partner may not sell: one row per suspension (until its reinstatement) or termination (for ever).';
COMMENT ON COLUMN reporting.partner_inactive_spans.partner_id IS 'The partner.';
COMMENT ON COLUMN reporting.partner_inactive_spans.from_on IS 'The first day it may not sell.';
COMMENT ON COLUMN reporting.partner_inactive_spans.until_on IS 'The first day it sells again; null for ever.';
COMMENT ON COLUMN reporting.partner_inactive_spans.event_position IS 'Global position of the suspension or termination event.';

-- Targets and what their attainment is computed from ---------------------------------------

CREATE VIEW reporting.targets AS
SELECT t.target_id,
       t.assignee_type,
       t.assignee_id,
       t.period,
       t.starts_on,
       t.ends_on,
       t.amount::numeric(18, 2) AS amount,
       t.parent_id AS parent_target_id,
       t.status,
       t.results_entered_by,
       t.position AS event_position,
       t.event_id
FROM public.targets t;
COMMENT ON VIEW reporting.targets IS 'Every sales target: whose, for which period, how much, and its state. Its KPIs are in reporting.target_kpis.';
COMMENT ON COLUMN reporting.targets.target_id IS 'The target (the key).';
COMMENT ON COLUMN reporting.targets.assignee_type IS 'employee, partner or team.';
COMMENT ON COLUMN reporting.targets.assignee_id IS 'Who: an employee or partner id, or a team''s leader''s employee id (text).';
COMMENT ON COLUMN reporting.targets.period IS 'YYYY-MM, YYYY-Qn or YYYY.';
COMMENT ON COLUMN reporting.targets.starts_on IS 'The period''s first day.';
COMMENT ON COLUMN reporting.targets.ends_on IS 'The period''s last day.';
COMMENT ON COLUMN reporting.targets.amount IS 'CNY, after approved revisions.';
COMMENT ON COLUMN reporting.targets.parent_target_id IS 'The target it was decomposed from, if any.';
COMMENT ON COLUMN reporting.targets.status IS 'open, closing (results entered, awaiting confirmation) or closed.';
COMMENT ON COLUMN reporting.targets.results_entered_by IS 'The actor who entered the closing results; null when none were entered.';
COMMENT ON COLUMN reporting.targets.event_position IS 'Global position of the last event that changed the target.';
COMMENT ON COLUMN reporting.targets.event_id IS 'Stable id of that event.';

CREATE VIEW reporting.target_kpis AS
SELECT t.target_id,
       k.kpi,
       (k.weight #>> '{}')::numeric AS weight,
       k.kpi IN ('sales_revenue', 'new_partners', 'active_second_tier_agents', 'training_pass_rate') AS computed,
       (t.kpi_goals ->> k.kpi)::numeric AS goal,
       (t.kpi_results ->> k.kpi)::numeric AS entered_result,
       CASE WHEN t.kpi_results ? k.kpi
            THEN CASE t.status WHEN 'closed' THEN 'confirmed' ELSE 'proposed' END END AS entered_result_status
FROM public.targets t
CROSS JOIN LATERAL jsonb_each(t.kpis) AS k(kpi, weight);
COMMENT ON VIEW reporting.target_kpis IS 'One row per target and KPI: its weight, the goal of a counted KPI, and the result entered at closing for a KPI that is not computed.';
COMMENT ON COLUMN reporting.target_kpis.target_id IS 'The target.';
COMMENT ON COLUMN reporting.target_kpis.kpi IS 'The KPI: sales_revenue, new_partners, active_second_tier_agents, training_pass_rate, market_share, partner_satisfaction, inventory_level ...';
COMMENT ON COLUMN reporting.target_kpis.weight IS 'Its weight; a target''s weights sum to 1.';
COMMENT ON COLUMN reporting.target_kpis.computed IS 'True for the KPIs the service computes (never entered): sales_revenue, new_partners, active_second_tier_agents, training_pass_rate.';
COMMENT ON COLUMN reporting.target_kpis.goal IS 'The goal of a counted KPI (new_partners, active_second_tier_agents, training_pass_rate); else null.';
COMMENT ON COLUMN reporting.target_kpis.entered_result IS 'The attainment ratio entered at closing (KPIs not computed); null until entered.';
COMMENT ON COLUMN reporting.target_kpis.entered_result_status IS 'proposed while the target is closing, confirmed once closed (confirmed by someone else); null when nothing was entered.';

CREATE VIEW reporting.target_recruitments AS
SELECT r.partner_id,
       r.recruited_by,
       r.approved_on,
       r.position AS event_position,
       r.event_id
FROM public.target_recruitments r;
COMMENT ON VIEW reporting.target_recruitments IS 'Partners applied with a recruiting employee, and the day their approval was recorded (the new_partners KPI).';
COMMENT ON COLUMN reporting.target_recruitments.partner_id IS 'The partner (the key).';
COMMENT ON COLUMN reporting.target_recruitments.recruited_by IS 'The employee who recruited it.';
COMMENT ON COLUMN reporting.target_recruitments.approved_on IS 'The company-calendar day its approval was recorded; null until then.';
COMMENT ON COLUMN reporting.target_recruitments.event_position IS 'Global position of the Partner.Applied event, then of the approval.';
COMMENT ON COLUMN reporting.target_recruitments.event_id IS 'Stable id of that event.';

CREATE VIEW reporting.target_trainings AS
SELECT t.position AS event_position,
       t.event_id,
       t.partner_id,
       t.training_id,
       t.held_on,
       t.trainer_id,
       t.attendees,
       t.passed
FROM public.target_trainings t;
COMMENT ON VIEW reporting.target_trainings IS 'One row per training given to a partner''s staff (the training_pass_rate KPI).';
COMMENT ON COLUMN reporting.target_trainings.event_position IS 'Global position of the Partner.TrainingRecorded event (the key).';
COMMENT ON COLUMN reporting.target_trainings.event_id IS 'Stable id of the event.';
COMMENT ON COLUMN reporting.target_trainings.partner_id IS 'The partner trained.';
COMMENT ON COLUMN reporting.target_trainings.training_id IS 'The training.';
COMMENT ON COLUMN reporting.target_trainings.held_on IS 'The day it was held.';
COMMENT ON COLUMN reporting.target_trainings.trainer_id IS 'The employee who gave it.';
COMMENT ON COLUMN reporting.target_trainings.attendees IS 'How many attended.';
COMMENT ON COLUMN reporting.target_trainings.passed IS 'How many passed the final test (never more than attendees).';

CREATE VIEW reporting.target_reporting_lines AS
SELECT l.employee_id,
       l.from_on,
       l.manager_id,
       l.position AS event_position,
       l.event_id
FROM public.target_reporting_lines l;
COMMENT ON VIEW reporting.target_reporting_lines IS 'Each employee''s manager from a day on (hire, transfer); the latest row on or before a day holds. Teams are the leader and everyone reporting to them, directly or not.';
COMMENT ON COLUMN reporting.target_reporting_lines.employee_id IS 'The employee.';
COMMENT ON COLUMN reporting.target_reporting_lines.from_on IS 'The day the line starts (the hire date, or a transfer''s date).';
COMMENT ON COLUMN reporting.target_reporting_lines.manager_id IS 'Their manager from that day; null for none.';
COMMENT ON COLUMN reporting.target_reporting_lines.event_position IS 'Global position of the Employee.Hired or Employee.Transferred event.';
COMMENT ON COLUMN reporting.target_reporting_lines.event_id IS 'Stable id of that event.';

-- Employees ------------------------------------------------------------------------------------

CREATE VIEW reporting.employee_contracts AS
SELECT c.employee_id,
       c.status,
       c.hired_on,
       c.contract_starts_on,
       c.contract_ends_on,
       c.reviewed_on,
       c.position AS event_position,
       c.event_id
FROM public.employee_contracts c;
COMMENT ON VIEW reporting.employee_contracts IS 'Each employee''s employment status and current labour contract (no personal data).';
COMMENT ON COLUMN reporting.employee_contracts.employee_id IS 'The employee (the key).';
COMMENT ON COLUMN reporting.employee_contracts.status IS 'probation, regular, probation_failed, dismissed or separated.';
COMMENT ON COLUMN reporting.employee_contracts.hired_on IS 'The hire date.';
COMMENT ON COLUMN reporting.employee_contracts.contract_starts_on IS 'The current labour contract''s first day.';
COMMENT ON COLUMN reporting.employee_contracts.contract_ends_on IS 'Its last day; null when open-ended.';
COMMENT ON COLUMN reporting.employee_contracts.reviewed_on IS 'The December review of the current contract, if recorded.';
COMMENT ON COLUMN reporting.employee_contracts.event_position IS 'Global position of the last event that changed the row.';
COMMENT ON COLUMN reporting.employee_contracts.event_id IS 'Stable id of that event.';

CREATE VIEW reporting.employee_logins AS
SELECT l.login,
       l.employee_id
FROM public.employee_logins l;
COMMENT ON VIEW reporting.employee_logins IS 'The actor name each employee''s API tokens carry: joins actors (results_entered_by, ...) to employees.';
COMMENT ON COLUMN reporting.employee_logins.login IS 'The actor name (the key; never reused).';
COMMENT ON COLUMN reporting.employee_logins.employee_id IS 'The employee.';

-- How fresh the read models are ----------------------------------------------------------------

CREATE VIEW reporting.read_model_freshness AS
SELECT c.name AS read_model,
       c.position AS event_position,
       h.head AS log_head,
       greatest(h.head - c.position, 0) AS lag_events,
       c.updated_at,
       f.name IS NOT NULL AS failing,
       f.since AS failing_since,
       f.position AS stopped_at_position
FROM public.projection_checkpoints c
CROSS JOIN (SELECT coalesce(max(e.position), 0) AS head FROM public.events e) h
LEFT JOIN public.projection_failures f ON f.name = c.name;
COMMENT ON VIEW reporting.read_model_freshness IS 'How far each read model has applied the event log: a dashboard''s figures are as of event_position (GET /v1/projections shows the same).';
COMMENT ON COLUMN reporting.read_model_freshness.read_model IS 'The read model (commissions, partner_activity, target_attainment ...).';
COMMENT ON COLUMN reporting.read_model_freshness.event_position IS 'The last global position it has applied.';
COMMENT ON COLUMN reporting.read_model_freshness.log_head IS 'The highest position in the event log.';
COMMENT ON COLUMN reporting.read_model_freshness.lag_events IS 'log_head - event_position: events not yet applied.';
COMMENT ON COLUMN reporting.read_model_freshness.updated_at IS 'When its position last moved.';
COMMENT ON COLUMN reporting.read_model_freshness.failing IS 'True when it is stopped at an event it cannot apply (until an operator retries or skips it).';
COMMENT ON COLUMN reporting.read_model_freshness.failing_since IS 'Since when it is stopped; null when running.';
COMMENT ON COLUMN reporting.read_model_freshness.stopped_at_position IS 'The position it is stopped at; null when running.';

-- Access ---------------------------------------------------------------------------------------
--
-- Roles are cluster-wide and a cluster holds several databases (tests make hundreds), so each
-- database has its own NOLOGIN group, named after it, which holds SELECT on its reporting views;
-- `channel-domain reporting-role NAME` makes login roles members of it. The group's comment marks
-- it as such, so that a database copied from another (CREATE DATABASE … TEMPLATE, a restore with
-- its grants) takes the other database's group off its views here.

CREATE FUNCTION reporting_group_name() RETURNS name LANGUAGE sql STABLE AS $$
    SELECT (CASE WHEN octet_length(current_database()) <= 53 THEN current_database() || '_reporting'
                 ELSE 'cd_' || md5(current_database()) || '_reporting' END)::name
$$;
COMMENT ON FUNCTION reporting_group_name() IS 'This database''s reporting group: <database>_reporting, or cd_<md5 of the name>_reporting for names over 53 bytes.';

CREATE FUNCTION reporting_group_marker() RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT 'channel-domain reporting group of database '
$$;
COMMENT ON FUNCTION reporting_group_marker() IS 'How a reporting group''s comment begins (COMMENT ON ROLE): what marks a role as some database''s reporting group.';

CREATE FUNCTION reporting_grant_access() RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    own name := reporting_group_name();
    own_oid oid;
    other name;
    relation regclass;
    granted integer := 0;
BEGIN
    -- Another database's reporting group holding anything here: this database was copied from that one.
    FOR other IN
        SELECT DISTINCT g.rolname FROM (
            SELECT (aclexplode(c.relacl)).grantee FROM pg_class c
            WHERE c.relnamespace = 'reporting'::regnamespace AND c.relacl IS NOT NULL
            UNION SELECT (aclexplode(n.nspacl)).grantee FROM pg_namespace n
            WHERE n.nspname = 'reporting' AND n.nspacl IS NOT NULL
            UNION SELECT (aclexplode(d.datacl)).grantee FROM pg_database d
            WHERE d.datname = current_database() AND d.datacl IS NOT NULL
        ) a JOIN pg_roles g ON g.oid = a.grantee
        WHERE g.rolname <> own AND shobj_description(g.oid, 'pg_authid') LIKE reporting_group_marker() || '%'
    LOOP
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA reporting FROM %I', other);
        EXECUTE format('REVOKE ALL ON SCHEMA reporting FROM %I', other);
        EXECUTE format('REVOKE ALL ON DATABASE %I FROM %I', current_database(), other);
    END LOOP;
    SELECT r.oid INTO own_oid FROM pg_roles r
    WHERE r.rolname = own AND NOT r.rolcanlogin
      AND shobj_description(r.oid, 'pg_authid') LIKE reporting_group_marker() || '%';
    IF own_oid IS NULL THEN
        RETURN NULL;  -- no reporting role made yet in this database (or the name is taken by another role)
    END IF;
    -- Granted only where missing: a GRANT rewrites the catalog row even when nothing changes.
    IF NOT EXISTS (SELECT FROM pg_database d, aclexplode(d.datacl) a
                   WHERE d.datname = current_database() AND a.grantee = own_oid AND a.privilege_type = 'CONNECT') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), own);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_namespace n, aclexplode(n.nspacl) a
                   WHERE n.nspname = 'reporting' AND a.grantee = own_oid AND a.privilege_type = 'USAGE') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA reporting TO %I', own);
    END IF;
    FOR relation IN
        SELECT c.oid::regclass FROM pg_class c
        WHERE c.relnamespace = 'reporting'::regnamespace AND c.relkind IN ('v', 'm', 'r', 'p', 'f')
          AND NOT EXISTS (SELECT FROM aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
                          WHERE a.grantee = own_oid AND a.privilege_type = 'SELECT')
        ORDER BY c.relname
    LOOP
        EXECUTE format('GRANT SELECT ON %s TO %I', relation, own);
        granted := granted + 1;
    END LOOP;
    RETURN granted;
END
$$;
COMMENT ON FUNCTION reporting_grant_access() IS 'Grants this database''s reporting group CONNECT, USAGE on schema reporting and SELECT on every relation in it, where missing, and takes another database''s reporting group off them; returns how many relations it granted now (null when the group does not exist). Run by channel-domain migrate and reporting-role.';
REVOKE ALL ON FUNCTION reporting_grant_access() FROM PUBLIC;
