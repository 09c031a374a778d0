-- depends: 0029.reporting-schema
--
-- Issue 16's read models in the `reporting` schema: the record lists (0025), the period close and
-- the disputes (0026), the sales reports (0027) and the partner reports (0028), as views under
-- 0029's conventions (English names, money numeric(18,2), `period` YYYY-MM with `period_month`,
-- `event_position`/`event_id`, a COMMENT on every view and column). A view over one table keeps
-- the table's name, without the `report_`/`sales_report_` prefix of the report projections'
-- tables; the payout register and the sales lines join what a BI user would otherwise join by hand
-- (partner name and kind, the employee's login).
--
-- Left out, on purpose: `employee_list.name_sealed` (an employee's name, sealed: personal data,
-- shown over the API to hr only); the full payout account of `report_payouts` (its last 4
-- characters only, as in `commission_housing_subsidies`); the registry `commission_closed_periods`
-- (the command side's copy of `commission_periods`, same months); `report_partners`,
-- `sales_report_partners` and `sales_report_contracts` (what the projections keep for their own
-- joins: `partner_list`, `partner_directory` and `contract_directory` hold the same).
--
-- `channel-domain migrate` calls reporting_grant_access() after this, so every reporting role of
-- the database reads these views at once.

-- Statements: what GET /v1/commissions/statements now says of the month, at the end (0029's
-- columns keep their order and types: a view's columns are a contract).

CREATE OR REPLACE VIEW reporting.commission_statements AS
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
            THEN ((s.period || '-15')::date + interval '1 month')::date END AS remittance_due_on,
       s.adjusted_sales::numeric(18, 2) AS adjusted_sales,
       s.period_status,
       -- The close that closed the month: its own, or the first later one (months close in order,
       -- and a close closes the months before it that had nothing to close).
       (SELECT c.closed_at FROM public.commission_periods c
        WHERE c.period >= s.period ORDER BY c.period LIMIT 1) AS closed_at
FROM public.commission_statements s;
COMMENT ON COLUMN reporting.commission_statements.adjusted_sales IS 'CNY: the amounts of the month''s adjustment lines, i.e. the net sales of closed months carried into this month (late sales, returns, deals). A consignee''s settlement counts them as proceeds.';
COMMENT ON COLUMN reporting.commission_statements.period_status IS 'open, or closed: a closed month takes no new lines and its statement never changes again.';
COMMENT ON COLUMN reporting.commission_statements.closed_at IS 'When the close that closed the month was recorded (UTC): its own close, or the first later one; null while open.';

-- Record lists (0025) ----------------------------------------------------------------------------

CREATE VIEW reporting.partner_list AS
SELECT p.partner_id,
       p.status,
       p.kind,
       p.name,
       p.region,
       p.grade,
       p.commission_rate,
       p.parent_partner_id,
       p.recruited_by,
       p.terminated_on,
       p.version,
       p.created_at,
       public.company_date(p.created_at) AS created_on,
       p.updated_at,
       p.position AS event_position,
       p.event_id
FROM public.partner_list p;
COMMENT ON VIEW reporting.partner_list IS 'Every partner as it stands now (GET /v1/partners): status, kind, name, region, grade, parent and recruiter.';
COMMENT ON COLUMN reporting.partner_list.partner_id IS 'The partner (the key).';
COMMENT ON COLUMN reporting.partner_list.status IS 'applied, approved, rejected, active, suspended or terminated.';
COMMENT ON COLUMN reporting.partner_list.kind IS 'enterprise_agent, sales_agent, consignee, broker, distributor, retailer or direct_store.';
COMMENT ON COLUMN reporting.partner_list.name IS 'The partner''s (business) name, as applied.';
COMMENT ON COLUMN reporting.partner_list.region IS 'The region, as applied; null when none was given.';
COMMENT ON COLUMN reporting.partner_list.grade IS 'A, B, C or D for a direct store; else null.';
COMMENT ON COLUMN reporting.partner_list.commission_rate IS 'A broker''s rate per deal (0.01 = 1 %); null for other kinds (their rates are on contracts).';
COMMENT ON COLUMN reporting.partner_list.parent_partner_id IS 'The first-tier agent of a second-tier agent; else null.';
COMMENT ON COLUMN reporting.partner_list.recruited_by IS 'The employee who recruited it, if named.';
COMMENT ON COLUMN reporting.partner_list.terminated_on IS 'The day its termination took effect; null unless terminated.';
COMMENT ON COLUMN reporting.partner_list.version IS 'The record''s version after its last event (as GET /v1/partners/{id} answers it).';
COMMENT ON COLUMN reporting.partner_list.created_at IS 'When it applied (its Partner.Applied event was recorded; UTC).';
COMMENT ON COLUMN reporting.partner_list.created_on IS 'The company-calendar day it applied.';
COMMENT ON COLUMN reporting.partner_list.updated_at IS 'When its last event was recorded (UTC).';
COMMENT ON COLUMN reporting.partner_list.event_position IS 'Global position of its last event.';
COMMENT ON COLUMN reporting.partner_list.event_id IS 'Stable id of that event.';

CREATE VIEW reporting.contract_list AS
SELECT c.contract_id,
       -- As the API shows it: a signed contract past its end date is expired (company calendar).
       CASE WHEN c.status = 'signed' AND c.ends_on < public.company_today() THEN 'expired' ELSE c.status END
           AS status,
       c.partner_id,
       c.partner_kind,
       c.starts_on,
       c.ends_on,
       c.signed_on,
       c.terminated_on,
       CASE WHEN c.signed_on IS NOT NULL THEN coalesce(c.terminated_on - 1, c.ends_on) END AS last_day_in_force,
       c.territory,
       c.commission ->> 'type' AS terms_type,
       c.commission AS terms,
       c.amendments,
       c.fee_rate,
       c.exclusive,
       c.products,
       c.renewals,
       c.version,
       c.created_at,
       public.company_date(c.created_at) AS created_on,
       c.updated_at,
       c.position AS event_position,
       c.event_id
FROM public.contract_list c;
COMMENT ON VIEW reporting.contract_list IS 'Every contract as it stands now (GET /v1/contracts): its status, term, territory and terms. Sales and returns are events of the contract: they move version and updated_at.';
COMMENT ON COLUMN reporting.contract_list.contract_id IS 'The contract (the key).';
COMMENT ON COLUMN reporting.contract_list.status IS 'draft, submitted, approved, signed, expired (signed, and ends_on before today on the company calendar: read at query time, as the API shows it) or terminated.';
COMMENT ON COLUMN reporting.contract_list.partner_id IS 'Its partner.';
COMMENT ON COLUMN reporting.contract_list.partner_kind IS 'The partner''s kind.';
COMMENT ON COLUMN reporting.contract_list.starts_on IS 'The first day of its term.';
COMMENT ON COLUMN reporting.contract_list.ends_on IS 'The last day of its term, moved by approved renewals.';
COMMENT ON COLUMN reporting.contract_list.signed_on IS 'The day it was signed; null until then.';
COMMENT ON COLUMN reporting.contract_list.terminated_on IS 'A termination''s effective date: in force up to the day before; else null.';
COMMENT ON COLUMN reporting.contract_list.last_day_in_force IS 'ends_on, or the day before terminated_on; null until signed.';
COMMENT ON COLUMN reporting.contract_list.territory IS 'An enterprise agent''s region; else null.';
COMMENT ON COLUMN reporting.contract_list.terms_type IS 'flat or tiered: the type of the terms it was drafted with.';
COMMENT ON COLUMN reporting.contract_list.terms IS 'The commission terms it was drafted with, as in the API (JSON); amendments change them from their effective dates (reporting.commission_terms has every version).';
COMMENT ON COLUMN reporting.contract_list.amendments IS 'Approved amendments, [{effective_on, commission}] by effective date (JSON).';
COMMENT ON COLUMN reporting.contract_list.fee_rate IS 'A consignee contract''s fee rate (0.02 = 2 %); else null.';
COMMENT ON COLUMN reporting.contract_list.exclusive IS 'Whether it was drafted as exclusive.';
COMMENT ON COLUMN reporting.contract_list.products IS 'The products it names (JSON list), or null.';
COMMENT ON COLUMN reporting.contract_list.renewals IS 'How many renewals were approved.';
COMMENT ON COLUMN reporting.contract_list.version IS 'The record''s version after its last event (as GET /v1/contracts/{id} answers it).';
COMMENT ON COLUMN reporting.contract_list.created_at IS 'When it was drafted (UTC).';
COMMENT ON COLUMN reporting.contract_list.created_on IS 'The company-calendar day it was drafted.';
COMMENT ON COLUMN reporting.contract_list.updated_at IS 'When its last event (a sale or return included) was recorded (UTC).';
COMMENT ON COLUMN reporting.contract_list.event_position IS 'Global position of its last event.';
COMMENT ON COLUMN reporting.contract_list.event_id IS 'Stable id of that event.';

-- Not the name: personal data, sealed in the table, shown over the API to hr only.
CREATE VIEW reporting.employee_list AS
SELECT e.employee_id,
       e.status,
       e.role,
       e.hired_on,
       e.probation_ends_on,
       e.manager_id,
       e.login,
       e.contract_starts_on,
       e.contract_ends_on,
       e.left_on,
       e.personal_data_erased,
       e.version,
       e.created_at,
       e.updated_at,
       e.position AS event_position,
       e.event_id
FROM public.employee_list e;
COMMENT ON VIEW reporting.employee_list IS 'Every employee as they stand now (GET /v1/employees), without personal data: no name, national id or bank card.';
COMMENT ON COLUMN reporting.employee_list.employee_id IS 'The employee (the key).';
COMMENT ON COLUMN reporting.employee_list.status IS 'probation, regular, probation_failed, dismissed or separated.';
COMMENT ON COLUMN reporting.employee_list.role IS 'The job role, after promotions.';
COMMENT ON COLUMN reporting.employee_list.hired_on IS 'The hire date.';
COMMENT ON COLUMN reporting.employee_list.probation_ends_on IS 'The last day of the probation; null without one.';
COMMENT ON COLUMN reporting.employee_list.manager_id IS 'Their manager, after transfers; null for none.';
COMMENT ON COLUMN reporting.employee_list.login IS 'The actor name their API tokens carry (joins prepared_by, raised_by, ... to employees); null without one.';
COMMENT ON COLUMN reporting.employee_list.contract_starts_on IS 'The current labour contract''s first day.';
COMMENT ON COLUMN reporting.employee_list.contract_ends_on IS 'Its last day; null when open-ended.';
COMMENT ON COLUMN reporting.employee_list.left_on IS 'The day a probation failure, dismissal or separation ended the employment; else null.';
COMMENT ON COLUMN reporting.employee_list.personal_data_erased IS 'True once their personal data was erased on request.';
COMMENT ON COLUMN reporting.employee_list.version IS 'The record''s version after its last event (as GET /v1/employees/{id} answers it).';
COMMENT ON COLUMN reporting.employee_list.created_at IS 'When the hire was recorded (UTC).';
COMMENT ON COLUMN reporting.employee_list.updated_at IS 'When their last event was recorded (UTC).';
COMMENT ON COLUMN reporting.employee_list.event_position IS 'Global position of their last event.';
COMMENT ON COLUMN reporting.employee_list.event_id IS 'Stable id of that event.';

CREATE VIEW reporting.target_list AS
SELECT t.target_id,
       t.status,
       t.assignee_type,
       t.assignee_id,
       t.period,
       t.amount::numeric(18, 2) AS amount,
       t.kpis,
       t.parent_id AS parent_target_id,
       t.version,
       t.created_at,
       t.updated_at,
       t.position AS event_position,
       t.event_id
FROM public.target_list t;
COMMENT ON VIEW reporting.target_list IS 'Every sales target as it stands now (GET /v1/targets), with its version. Its days, goals and entered results are in reporting.targets and reporting.target_kpis.';
COMMENT ON COLUMN reporting.target_list.target_id IS 'The target (the key).';
COMMENT ON COLUMN reporting.target_list.status IS 'open, closing (results entered, awaiting confirmation) or closed.';
COMMENT ON COLUMN reporting.target_list.assignee_type IS 'employee, partner or team.';
COMMENT ON COLUMN reporting.target_list.assignee_id IS 'Who: an employee or partner id, or a team''s leader''s employee id (text).';
COMMENT ON COLUMN reporting.target_list.period IS 'YYYY-MM, YYYY-Qn or YYYY, as set.';
COMMENT ON COLUMN reporting.target_list.amount IS 'CNY, after approved revisions.';
COMMENT ON COLUMN reporting.target_list.kpis IS 'KPI name -> weight (JSON); a target''s weights sum to 1.';
COMMENT ON COLUMN reporting.target_list.parent_target_id IS 'The target it was decomposed from, if any.';
COMMENT ON COLUMN reporting.target_list.version IS 'The record''s version after its last event (as GET /v1/targets/{id} answers it).';
COMMENT ON COLUMN reporting.target_list.created_at IS 'When it was set (UTC).';
COMMENT ON COLUMN reporting.target_list.updated_at IS 'When its last event was recorded (UTC).';
COMMENT ON COLUMN reporting.target_list.event_position IS 'Global position of its last event.';
COMMENT ON COLUMN reporting.target_list.event_id IS 'Stable id of that event.';

-- Period close and disputes (0026) -----------------------------------------------------------------

CREATE VIEW reporting.commission_periods AS
SELECT c.period,
       (c.period || '-01')::date AS period_month,
       c.closes_after,
       c.closed_by,
       c.closed_at,
       public.company_date(c.closed_at) AS closed_on,
       c.position AS event_position,
       c.event_id
FROM public.commission_periods c;
COMMENT ON VIEW reporting.commission_periods IS 'One row per commission month closed by finance (CommissionPeriod.Closed). Every month up to the latest row is closed: a close also closes the months before it that had nothing to close (reporting.commission_statements.period_status).';
COMMENT ON COLUMN reporting.commission_periods.period IS 'The month closed, YYYY-MM (the key).';
COMMENT ON COLUMN reporting.commission_periods.period_month IS 'The month as the date of its first day.';
COMMENT ON COLUMN reporting.commission_periods.closes_after IS 'The month closed before it, YYYY-MM; null for the first close.';
COMMENT ON COLUMN reporting.commission_periods.closed_by IS 'The finance actor who closed it.';
COMMENT ON COLUMN reporting.commission_periods.closed_at IS 'When the close was recorded (UTC).';
COMMENT ON COLUMN reporting.commission_periods.closed_on IS 'The company-calendar day the close was recorded.';
COMMENT ON COLUMN reporting.commission_periods.event_position IS 'Global position of the CommissionPeriod.Closed event.';
COMMENT ON COLUMN reporting.commission_periods.event_id IS 'Stable id of that event.';

-- An auditor follows a dispute from the line disputed, through its resolution, to the adjustment
-- line the resolution booked (read from the ledger itself, not from the dispute's own copy).
CREATE VIEW reporting.commission_disputes AS
SELECT d.dispute_id,
       d.partner_id,
       d.period,
       (d.period || '-01')::date AS period_month,
       d.contract_id,
       d.line_position AS line_event_position,
       d.line_no,
       d.line_event_id,
       disputed.kind AS line_kind,
       disputed.order_id AS line_order_id,
       disputed.amount::numeric(18, 2) AS line_amount,
       disputed.commission::numeric(18, 2) AS line_commission,
       d.reason,
       d.raised_by,
       d.raised_at,
       public.company_date(d.raised_at) AS raised_on,
       d.status,
       d.resolved_by,
       d.resolved_at,
       public.company_date(d.resolved_at) AS resolved_on,
       d.note,
       d.amount::numeric(18, 2) AS amount,
       d.resolved_position AS resolution_event_position,
       d.resolved_event_id AS resolution_event_id,
       d.adjustment_period,
       (d.adjustment_period || '-01')::date AS adjustment_period_month,
       adjustment.line_no AS adjustment_line_no,
       adjustment.commission::numeric(18, 2) AS adjustment_commission,
       adjustment.corrects_period AS adjustment_corrects_period,
       d.position AS event_position,
       d.event_id
FROM public.commission_disputes d
CROSS JOIN LATERAL (
    SELECT min(l.kind) AS kind, min(l.order_id) AS order_id, sum(l.amount) AS amount, sum(l.commission) AS commission
    FROM public.commission_lines l
    WHERE l.position = d.line_position AND l.partner_id = d.partner_id
      AND (d.line_no IS NULL OR l.line_no = d.line_no)
) disputed
LEFT JOIN public.commission_lines adjustment ON adjustment.dispute_id = d.dispute_id;
COMMENT ON VIEW reporting.commission_disputes IS 'One row per dispute of a statement line: the line disputed, the resolution (upheld with a signed correction, or rejected; always by someone other than who raised it) and the adjustment line it booked in the first open month.';
COMMENT ON COLUMN reporting.commission_disputes.dispute_id IS 'The dispute (the key; GET /v1/commissions/disputes/{id}).';
COMMENT ON COLUMN reporting.commission_disputes.partner_id IS 'The partner whose statement is disputed.';
COMMENT ON COLUMN reporting.commission_disputes.period IS 'The statement''s month, YYYY-MM.';
COMMENT ON COLUMN reporting.commission_disputes.period_month IS 'The statement''s month as the date of its first day.';
COMMENT ON COLUMN reporting.commission_disputes.contract_id IS 'The disputed line''s contract; null for a broker''s deal.';
COMMENT ON COLUMN reporting.commission_disputes.line_event_position IS 'The disputed line''s event_position in reporting.commission_lines.';
COMMENT ON COLUMN reporting.commission_disputes.line_no IS 'The disputed line''s line_no there; null when every line of that event on the statement is disputed.';
COMMENT ON COLUMN reporting.commission_disputes.line_event_id IS 'Stable id of the disputed line''s event.';
COMMENT ON COLUMN reporting.commission_disputes.line_kind IS 'sale, return, deal or adjustment: the kind of the line(s) disputed.';
COMMENT ON COLUMN reporting.commission_disputes.line_order_id IS 'The order or deal of the line(s) disputed; null for an adjustment.';
COMMENT ON COLUMN reporting.commission_disputes.line_amount IS 'CNY: the amount of the line(s) disputed (summed over the event''s lines when line_no is null).';
COMMENT ON COLUMN reporting.commission_disputes.line_commission IS 'CNY: the commission of the line(s) disputed (summed likewise).';
COMMENT ON COLUMN reporting.commission_disputes.reason IS 'Why it was raised, as given.';
COMMENT ON COLUMN reporting.commission_disputes.raised_by IS 'The actor who raised it.';
COMMENT ON COLUMN reporting.commission_disputes.raised_at IS 'When it was raised (UTC).';
COMMENT ON COLUMN reporting.commission_disputes.raised_on IS 'The company-calendar day it was raised.';
COMMENT ON COLUMN reporting.commission_disputes.status IS 'open, upheld or rejected.';
COMMENT ON COLUMN reporting.commission_disputes.resolved_by IS 'The finance actor who resolved it (never whoever raised it); null while open.';
COMMENT ON COLUMN reporting.commission_disputes.resolved_at IS 'When it was resolved (UTC); null while open.';
COMMENT ON COLUMN reporting.commission_disputes.resolved_on IS 'The company-calendar day it was resolved; null while open.';
COMMENT ON COLUMN reporting.commission_disputes.note IS 'The resolution''s note; null while open.';
COMMENT ON COLUMN reporting.commission_disputes.amount IS 'CNY: an upheld dispute''s signed correction of the commission; null when rejected or open.';
COMMENT ON COLUMN reporting.commission_disputes.resolution_event_position IS 'Global position of the CommissionDispute.Resolved event; for an upheld dispute, also the adjustment line''s event_position in reporting.commission_lines.';
COMMENT ON COLUMN reporting.commission_disputes.resolution_event_id IS 'Stable id of that event; null while open.';
COMMENT ON COLUMN reporting.commission_disputes.adjustment_period IS 'Upheld: the month the adjustment line was booked in, YYYY-MM (the month the resolution was recorded in, or the first open month after it); else null.';
COMMENT ON COLUMN reporting.commission_disputes.adjustment_period_month IS 'That month as the date of its first day; else null.';
COMMENT ON COLUMN reporting.commission_disputes.adjustment_line_no IS 'Upheld: the adjustment line''s line_no in reporting.commission_lines (the ledger''s own line); else null.';
COMMENT ON COLUMN reporting.commission_disputes.adjustment_commission IS 'CNY: the commission of that adjustment line as booked in the ledger (equal to amount); null when none was booked.';
COMMENT ON COLUMN reporting.commission_disputes.adjustment_corrects_period IS 'The month that adjustment line corrects, YYYY-MM (the disputed statement''s month); null when none was booked.';
COMMENT ON COLUMN reporting.commission_disputes.event_position IS 'Global position of the CommissionDispute.Raised event.';
COMMENT ON COLUMN reporting.commission_disputes.event_id IS 'Stable id of that event.';

-- Sales reports (0027) -----------------------------------------------------------------------------

CREATE VIEW reporting.sales_lines AS
SELECT l.position AS event_position,
       l.event_id,
       l.kind,
       l.business_date,
       to_char(l.business_date, 'YYYY-MM') AS period,
       date_trunc('month', l.business_date)::date AS period_month,
       l.partner_id,
       l.partner_kind,
       p.name AS partner_name,
       pl.region AS partner_region,
       l.contract_id,
       l.order_id,
       l.product,
       l.region,
       l.employee_id,
       e.login AS employee_login,
       l.amount::numeric(18, 2) AS amount,
       (CASE WHEN l.kind = 'return' THEN -l.amount ELSE l.amount END)::numeric(18, 2) AS net_amount
FROM public.sales_report_lines l
LEFT JOIN public.sales_report_partners p ON p.partner_id = l.partner_id
LEFT JOIN public.partner_list pl ON pl.partner_id = l.partner_id
LEFT JOIN public.employee_logins e ON e.employee_id = l.employee_id;
COMMENT ON VIEW reporting.sales_lines IS 'One row per sale, return and broker deal, with what a sales report groups by: the partner (kind, name, region), the sale''s product and region, the employee credited (GET /v1/reports/sales). sum(net_amount) is net sales.';
COMMENT ON COLUMN reporting.sales_lines.event_position IS 'Global position of the Contract.SaleRecorded, Contract.ReturnRecorded or Partner.DealClosed event (the key).';
COMMENT ON COLUMN reporting.sales_lines.event_id IS 'Stable id of that event.';
COMMENT ON COLUMN reporting.sales_lines.kind IS 'sale, return or deal.';
COMMENT ON COLUMN reporting.sales_lines.business_date IS 'The sale, return or deal date: the day reports and statements book it by.';
COMMENT ON COLUMN reporting.sales_lines.period IS 'The month of business_date, YYYY-MM.';
COMMENT ON COLUMN reporting.sales_lines.period_month IS 'That month as the date of its first day.';
COMMENT ON COLUMN reporting.sales_lines.partner_id IS 'The partner who sold (or closed the deal).';
COMMENT ON COLUMN reporting.sales_lines.partner_kind IS 'The partner''s kind.';
COMMENT ON COLUMN reporting.sales_lines.partner_name IS 'The partner''s name, as applied.';
COMMENT ON COLUMN reporting.sales_lines.partner_region IS 'The partner''s region, as applied (the region of the partner; region is the sale''s); null when none.';
COMMENT ON COLUMN reporting.sales_lines.contract_id IS 'The contract; null for a deal.';
COMMENT ON COLUMN reporting.sales_lines.order_id IS 'The order (for a return: the order returned) or the deal id.';
COMMENT ON COLUMN reporting.sales_lines.product IS 'The product the sale named (a return carries its sale''s); null for none and for deals.';
COMMENT ON COLUMN reporting.sales_lines.region IS 'The region the sale named (a return carries its sale''s); null for none and for deals.';
COMMENT ON COLUMN reporting.sales_lines.employee_id IS 'The employee credited with the sale (a return carries its sale''s); null for none and for deals.';
COMMENT ON COLUMN reporting.sales_lines.employee_login IS 'That employee''s login (the actor name); never their name, which is personal data.';
COMMENT ON COLUMN reporting.sales_lines.amount IS 'CNY, positive for every kind (a return''s is what was returned).';
COMMENT ON COLUMN reporting.sales_lines.net_amount IS 'CNY: amount, negative for a return.';

CREATE VIEW reporting.sales_months AS
SELECT m.month AS period,
       (m.month || '-01')::date AS period_month,
       m.dimension,
       nullif(m.key, '') AS key,
       CASE WHEN m.dimension = 'partner' THEN nullif(m.key, '')::uuid END AS partner_id,
       CASE WHEN m.dimension = 'employee' THEN nullif(m.key, '')::uuid END AS employee_id,
       m.gross::numeric(18, 2) AS gross_sales,
       m.returns::numeric(18, 2) AS returns,
       (m.gross - m.returns)::numeric(18, 2) AS net_sales,
       m.orders
FROM public.sales_report_months m;
COMMENT ON VIEW reporting.sales_months IS 'Sales, returns and orders summed per month and per partner, region, product or employee (what the sales reports sum): a year is twelve months'' rows. Every dimension of a month sums to the same totals.';
COMMENT ON COLUMN reporting.sales_months.period IS 'The month of the lines'' business_date, YYYY-MM.';
COMMENT ON COLUMN reporting.sales_months.period_month IS 'That month as the date of its first day.';
COMMENT ON COLUMN reporting.sales_months.dimension IS 'partner, region, product or employee: what key is.';
COMMENT ON COLUMN reporting.sales_months.key IS 'The partner or employee id as text, or the region or product as recorded; null for the lines that named none (deals have no region, product or employee).';
COMMENT ON COLUMN reporting.sales_months.partner_id IS 'The partner, on the partner dimension''s rows; else null.';
COMMENT ON COLUMN reporting.sales_months.employee_id IS 'The employee, on the employee dimension''s rows that name one; else null.';
COMMENT ON COLUMN reporting.sales_months.gross_sales IS 'CNY: sales and deals.';
COMMENT ON COLUMN reporting.sales_months.returns IS 'CNY: returns, as a positive amount.';
COMMENT ON COLUMN reporting.sales_months.net_sales IS 'CNY: gross_sales - returns.';
COMMENT ON COLUMN reporting.sales_months.orders IS 'How many sales and deals (returns are not orders).';

-- Partner reports (0028) ---------------------------------------------------------------------------

CREATE VIEW reporting.partner_transitions AS
SELECT t.position AS event_position,
       t.event_id,
       t.partner_id,
       t.kind AS partner_kind,
       t.transition,
       t.status,
       t.effective_on,
       t.recorded_at,
       t.recorded_on,
       t.recruited_by
FROM public.report_partner_transitions t;
COMMENT ON VIEW reporting.partner_transitions IS 'One row per change of a partner''s lifecycle status. Its status on a day is that of its last row (by event_position) with effective_on on or before the day.';
COMMENT ON COLUMN reporting.partner_transitions.event_position IS 'Global position of the Partner.Applied, Reviewed, Activated, Suspended, Reinstated or Terminated event (the key).';
COMMENT ON COLUMN reporting.partner_transitions.event_id IS 'Stable id of that event.';
COMMENT ON COLUMN reporting.partner_transitions.partner_id IS 'The partner.';
COMMENT ON COLUMN reporting.partner_transitions.partner_kind IS 'The partner''s kind.';
COMMENT ON COLUMN reporting.partner_transitions.transition IS 'applied, approved, rejected, activated (first contract signed), suspended, reinstated or terminated.';
COMMENT ON COLUMN reporting.partner_transitions.status IS 'The status from effective_on: applied, approved (a broker: active), rejected, active, suspended or terminated.';
COMMENT ON COLUMN reporting.partner_transitions.effective_on IS 'The day the status holds from: recorded_on for an application or review, signed_on for an activation, the on day of a suspension, reinstatement or termination; never before the previous row''s.';
COMMENT ON COLUMN reporting.partner_transitions.recorded_at IS 'When the event was recorded (UTC).';
COMMENT ON COLUMN reporting.partner_transitions.recorded_on IS 'The company-calendar day it was recorded.';
COMMENT ON COLUMN reporting.partner_transitions.recruited_by IS 'The partner''s recruiter, if named: an approved row with one is a new partner of that employee in the month of recorded_on (the new_partners KPI).';

CREATE VIEW reporting.inventory_lines AS
SELECT i.position AS event_position,
       i.event_id,
       i.partner_id,
       i.product,
       i.report_date,
       i.opening,
       i.received,
       i.sold,
       i.closing,
       i.correction_reason IS NOT NULL AS correction,
       i.correction_reason,
       i.recorded_at,
       public.company_date(i.recorded_at) AS recorded_on
FROM public.report_inventory_lines i;
COMMENT ON VIEW reporting.inventory_lines IS 'One row per product line of an inventory report (PSI: opening + received - sold = closing). A product''s stock on a day is its line with the latest report_date on or before it, the latest event_position among that date''s.';
COMMENT ON COLUMN reporting.inventory_lines.event_position IS 'Global position of the Partner.InventoryReported event (with product, the key).';
COMMENT ON COLUMN reporting.inventory_lines.event_id IS 'Stable id of that event.';
COMMENT ON COLUMN reporting.inventory_lines.partner_id IS 'The distributor or consignee reporting.';
COMMENT ON COLUMN reporting.inventory_lines.product IS 'The product.';
COMMENT ON COLUMN reporting.inventory_lines.report_date IS 'The day the report is for (its as_of).';
COMMENT ON COLUMN reporting.inventory_lines.opening IS 'Units at the start of the report''s span.';
COMMENT ON COLUMN reporting.inventory_lines.received IS 'Units received.';
COMMENT ON COLUMN reporting.inventory_lines.sold IS 'Units sold.';
COMMENT ON COLUMN reporting.inventory_lines.closing IS 'Units at report_date: opening + received - sold.';
COMMENT ON COLUMN reporting.inventory_lines.correction IS 'True when the report corrected an earlier one (it then replaces that date''s figures).';
COMMENT ON COLUMN reporting.inventory_lines.correction_reason IS 'The correction''s reason, as given; null for a regular report.';
COMMENT ON COLUMN reporting.inventory_lines.recorded_at IS 'When the report was recorded (UTC).';
COMMENT ON COLUMN reporting.inventory_lines.recorded_on IS 'The company-calendar day it was recorded.';

-- The register finance sends to payroll, with the account masked as for every role but finance.
CREATE VIEW reporting.payout_register AS
SELECT r.partner_id,
       p.name AS partner_name,
       p.kind AS partner_kind,
       r.period,
       (r.period || '-01')::date AS period_month,
       r.kind,
       r.amount::numeric(18, 2) AS amount,
       right(regexp_replace(r.account, '\s', '', 'g'), 4) AS account_last4,
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
COMMENT ON VIEW reporting.payout_register IS 'The payout register (GET /v1/reports/payouts): one row per partner, month and kind of money paid out (commission payout or housing subsidy), with its status and who took each step when.';
COMMENT ON COLUMN reporting.payout_register.partner_id IS 'The partner paid (with period and kind, the key).';
COMMENT ON COLUMN reporting.payout_register.partner_name IS 'The partner''s name, as applied.';
COMMENT ON COLUMN reporting.payout_register.partner_kind IS 'The partner''s kind.';
COMMENT ON COLUMN reporting.payout_register.period IS 'The month paid for, YYYY-MM.';
COMMENT ON COLUMN reporting.payout_register.period_month IS 'That month as the date of its first day.';
COMMENT ON COLUMN reporting.payout_register.kind IS 'commission (a payout of total_due) or housing_subsidy (never part of total_due).';
COMMENT ON COLUMN reporting.payout_register.amount IS 'CNY prepared.';
COMMENT ON COLUMN reporting.payout_register.account_last4 IS 'The last 4 characters of the approved payout account (a housing subsidy''s: as paid, once paid); null when none was recorded. The full account is for finance, over the API.';
COMMENT ON COLUMN reporting.payout_register.status IS 'prepared, verified (by finance), approved (by the general manager) or paid.';
COMMENT ON COLUMN reporting.payout_register.prepared_by IS 'The actor who prepared it.';
COMMENT ON COLUMN reporting.payout_register.prepared_at IS 'When it was prepared (UTC).';
COMMENT ON COLUMN reporting.payout_register.verified_by IS 'The finance actor who verified it; null until then.';
COMMENT ON COLUMN reporting.payout_register.verified_at IS 'When it was verified (UTC); null until then.';
COMMENT ON COLUMN reporting.payout_register.approved_by IS 'The actor (general manager) who approved it; null until then.';
COMMENT ON COLUMN reporting.payout_register.approved_at IS 'When it was approved (UTC); null until then.';
COMMENT ON COLUMN reporting.payout_register.paid_by IS 'The actor who recorded the payment; null until paid.';
COMMENT ON COLUMN reporting.payout_register.paid_at IS 'When the payment was recorded (UTC); null until paid.';
COMMENT ON COLUMN reporting.payout_register.paid_on IS 'The payment date given; null until paid.';
COMMENT ON COLUMN reporting.payout_register.event_position IS 'Global position of the last step''s event.';
COMMENT ON COLUMN reporting.payout_register.event_id IS 'Stable id of that event.';

-- As GET /v1/reports/evaluations reads them: the average rounded half up, poor by the exact mean,
-- addressed by a later corrective plan or termination recorded within 30 days.
CREATE VIEW reporting.partner_evaluations AS
SELECT e.position AS event_position,
       e.event_id,
       e.partner_id,
       p.name AS partner_name,
       p.kind AS partner_kind,
       e.period,
       e.starts_on,
       e.ends_on,
       e.scores,
       e.kpis,
       e.score_total,
       round(e.score_total / e.kpis, 2) AS average,
       e.score_total < 60 * e.kpis AS poor,
       CASE WHEN e.score_total < 60 * e.kpis THEN public.company_date(e.recorded_at + interval '30 days') END
           AS respond_by,
       CASE WHEN e.score_total < 60 * e.kpis THEN
           EXISTS (SELECT FROM public.report_corrective_plans c
                   WHERE c.partner_id = e.partner_id AND c.position > e.position
                     AND c.recorded_at <= e.recorded_at + interval '30 days')
           OR EXISTS (SELECT FROM public.report_partner_transitions t
                      WHERE t.partner_id = e.partner_id AND t.transition = 'terminated' AND t.position > e.position
                        AND t.recorded_at <= e.recorded_at + interval '30 days')
       END AS addressed,
       e.recorded_at,
       public.company_date(e.recorded_at) AS recorded_on
FROM public.report_evaluations e
LEFT JOIN public.report_partners p ON p.partner_id = e.partner_id;
COMMENT ON VIEW reporting.partner_evaluations IS 'One row per partner evaluation (Partner.Evaluated): its scores, average, whether it is poor and whether a poor one was addressed within 30 days. One row per score is in reporting.partner_evaluation_scores.';
COMMENT ON COLUMN reporting.partner_evaluations.event_position IS 'Global position of the Partner.Evaluated event (the key).';
COMMENT ON COLUMN reporting.partner_evaluations.event_id IS 'Stable id of that event.';
COMMENT ON COLUMN reporting.partner_evaluations.partner_id IS 'The partner evaluated.';
COMMENT ON COLUMN reporting.partner_evaluations.partner_name IS 'The partner''s name, as applied.';
COMMENT ON COLUMN reporting.partner_evaluations.partner_kind IS 'The partner''s kind.';
COMMENT ON COLUMN reporting.partner_evaluations.period IS 'The period evaluated: YYYY-MM, YYYY-Qn or YYYY.';
COMMENT ON COLUMN reporting.partner_evaluations.starts_on IS 'The period''s first day.';
COMMENT ON COLUMN reporting.partner_evaluations.ends_on IS 'The period''s last day.';
COMMENT ON COLUMN reporting.partner_evaluations.scores IS 'KPI -> score, 0-100 (JSON, decimal strings).';
COMMENT ON COLUMN reporting.partner_evaluations.kpis IS 'How many KPIs were scored.';
COMMENT ON COLUMN reporting.partner_evaluations.score_total IS 'The sum of the scores.';
COMMENT ON COLUMN reporting.partner_evaluations.average IS 'score_total / kpis, rounded half up to 2 places.';
COMMENT ON COLUMN reporting.partner_evaluations.poor IS 'True when the exact average is below 60 (59.999 is poor though average shows 60.00).';
COMMENT ON COLUMN reporting.partner_evaluations.respond_by IS 'Poor only: the company-calendar day 30 days after it was recorded, by which a corrective plan or a termination is due; else null.';
COMMENT ON COLUMN reporting.partner_evaluations.addressed IS 'Poor only: true when a corrective plan or a termination of the partner was recorded after it, within 30 days; null when not poor. False before respond_by means not yet.';
COMMENT ON COLUMN reporting.partner_evaluations.recorded_at IS 'When it was recorded (UTC); the 30 days run from it.';
COMMENT ON COLUMN reporting.partner_evaluations.recorded_on IS 'The company-calendar day it was recorded.';

CREATE VIEW reporting.partner_evaluation_scores AS
SELECT e.position AS event_position,
       e.event_id,
       e.partner_id,
       e.period,
       s.kpi,
       (s.score #>> '{}')::numeric AS score
FROM public.report_evaluations e
CROSS JOIN LATERAL jsonb_each(e.scores) AS s(kpi, score);
COMMENT ON VIEW reporting.partner_evaluation_scores IS 'One row per evaluation and KPI scored: reporting.partner_evaluations'' scores unfolded.';
COMMENT ON COLUMN reporting.partner_evaluation_scores.event_position IS 'Global position of the Partner.Evaluated event (with kpi, the key).';
COMMENT ON COLUMN reporting.partner_evaluation_scores.event_id IS 'Stable id of that event.';
COMMENT ON COLUMN reporting.partner_evaluation_scores.partner_id IS 'The partner evaluated.';
COMMENT ON COLUMN reporting.partner_evaluation_scores.period IS 'The period evaluated: YYYY-MM, YYYY-Qn or YYYY.';
COMMENT ON COLUMN reporting.partner_evaluation_scores.kpi IS 'The KPI scored, as named in the evaluation.';
COMMENT ON COLUMN reporting.partner_evaluation_scores.score IS 'Its score, 0-100.';

CREATE VIEW reporting.corrective_plans AS
SELECT c.plan_id,
       c.partner_id,
       c.actions,
       jsonb_array_length(c.actions) AS action_count,
       c.due_on,
       c.status,
       c.recorded_at,
       public.company_date(c.recorded_at) AS recorded_on,
       c.closed_at,
       public.company_date(c.closed_at) AS closed_on,
       c.position AS event_position,
       c.event_id
FROM public.report_corrective_plans c;
COMMENT ON VIEW reporting.corrective_plans IS 'One row per corrective plan of a partner: its actions and due date, open until closed as met or failed.';
COMMENT ON COLUMN reporting.corrective_plans.plan_id IS 'The plan (the key).';
COMMENT ON COLUMN reporting.corrective_plans.partner_id IS 'The partner.';
COMMENT ON COLUMN reporting.corrective_plans.actions IS 'The actions (JSON list of text).';
COMMENT ON COLUMN reporting.corrective_plans.action_count IS 'How many actions.';
COMMENT ON COLUMN reporting.corrective_plans.due_on IS 'The day it is due.';
COMMENT ON COLUMN reporting.corrective_plans.status IS 'open, met or failed.';
COMMENT ON COLUMN reporting.corrective_plans.recorded_at IS 'When it was recorded (UTC).';
COMMENT ON COLUMN reporting.corrective_plans.recorded_on IS 'The company-calendar day it was recorded.';
COMMENT ON COLUMN reporting.corrective_plans.closed_at IS 'When it was closed as met or failed (UTC); null while open.';
COMMENT ON COLUMN reporting.corrective_plans.closed_on IS 'The company-calendar day it was closed; null while open.';
COMMENT ON COLUMN reporting.corrective_plans.event_position IS 'Global position of the Partner.CorrectivePlanRecorded event.';
COMMENT ON COLUMN reporting.corrective_plans.event_id IS 'Stable id of that event.';
