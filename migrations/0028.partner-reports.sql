-- depends: 0024.webhook-waiting-lines
--
-- Partner reports (issue 16): the read model behind /v1/reports/partners, /inventory, /payouts and
-- /evaluations (receivables read the commission ledger, so their figures are the statements').
-- Kept by the `partner_reports` projection (src/projections/partner_reports.py) alone, from the
-- Partner events; every row names the event it came from. docs/partner-reports.md says how each
-- report reads them.

CREATE TABLE report_partners (
    partner_id    uuid   PRIMARY KEY,
    kind          text   NOT NULL,
    name          text   NOT NULL,
    recruited_by  uuid,
    position      bigint NOT NULL,
    event_id      uuid   NOT NULL
);
COMMENT ON TABLE report_partners IS 'Every partner that applied: kind, name and recruiter, from Partner.Applied.';

CREATE TABLE report_partner_transitions (
    position      bigint      PRIMARY KEY,
    event_id      uuid        NOT NULL UNIQUE,
    partner_id    uuid        NOT NULL,
    kind          text        NOT NULL,
    transition    text        NOT NULL,
    status        text        NOT NULL,
    recorded_at   timestamptz NOT NULL,
    recorded_on   date        NOT NULL,
    effective_on  date        NOT NULL,
    recruited_by  uuid
);
CREATE INDEX report_partner_transitions_partner_idx ON report_partner_transitions (partner_id, position);
CREATE INDEX report_partner_transitions_recorded_idx ON report_partner_transitions (transition, recorded_on);
CREATE INDEX report_partner_transitions_effective_idx ON report_partner_transitions (effective_on);
COMMENT ON TABLE report_partner_transitions IS 'One row per change of a partner''s lifecycle status (applied, approved, rejected, activated, suspended, reinstated, terminated).';
COMMENT ON COLUMN report_partner_transitions.transition IS 'applied, approved, rejected, activated (first contract signed), suspended, reinstated or terminated.';
COMMENT ON COLUMN report_partner_transitions.status IS 'The partner''s status from effective_on (a broker''s approval makes it active).';
COMMENT ON COLUMN report_partner_transitions.recorded_on IS 'The company-calendar day the event was recorded.';
COMMENT ON COLUMN report_partner_transitions.effective_on IS 'The day the status holds from: recorded_on for applications and reviews, signed_on for an activation, on for a suspension, reinstatement or termination; never before the previous row''s.';

CREATE TABLE report_inventory_lines (
    position           bigint      NOT NULL,
    product            text        NOT NULL,
    event_id           uuid        NOT NULL,
    partner_id         uuid        NOT NULL,
    report_date        date        NOT NULL,
    opening            bigint      NOT NULL,
    received           bigint      NOT NULL,
    sold               bigint      NOT NULL,
    closing            bigint      NOT NULL,
    correction_reason  text,
    recorded_at        timestamptz NOT NULL,
    PRIMARY KEY (position, product)
);
CREATE INDEX report_inventory_lines_latest_idx
    ON report_inventory_lines (partner_id, product, report_date DESC, position DESC);
COMMENT ON TABLE report_inventory_lines IS 'One row per product line of a Partner.InventoryReported event (PSI: opening + received - sold = closing).';
COMMENT ON COLUMN report_inventory_lines.report_date IS 'The date the report is for (its as_of).';
COMMENT ON COLUMN report_inventory_lines.correction_reason IS 'Set when the report was a correction; null for a regular report.';

CREATE TABLE report_payouts (
    partner_id   uuid        NOT NULL,
    period       text        NOT NULL,
    kind         text        NOT NULL,
    amount       numeric,
    account      text,
    status       text        NOT NULL,
    prepared_by  text,
    prepared_at  timestamptz,
    verified_by  text,
    verified_at  timestamptz,
    approved_by  text,
    approved_at  timestamptz,
    paid_by      text,
    paid_at      timestamptz,
    paid_on      date,
    position     bigint      NOT NULL,
    event_id     uuid        NOT NULL,
    PRIMARY KEY (partner_id, period, kind)
);
CREATE INDEX report_payouts_period_idx ON report_payouts (period, partner_id);
COMMENT ON TABLE report_payouts IS 'The payout register: one row per partner, month and kind (commission payout or housing subsidy), with who did each step and when.';
COMMENT ON COLUMN report_payouts.kind IS 'commission or housing_subsidy.';
COMMENT ON COLUMN report_payouts.account IS 'The approved payout account: as prepared; a housing subsidy''s, as paid once paid.';
COMMENT ON COLUMN report_payouts.status IS 'prepared, verified, approved or paid.';
COMMENT ON COLUMN report_payouts.position IS 'The last step''s event.';

CREATE TABLE report_evaluations (
    position     bigint      PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    partner_id   uuid        NOT NULL,
    period       text        NOT NULL,
    starts_on    date        NOT NULL,
    ends_on      date        NOT NULL,
    scores       jsonb       NOT NULL,
    score_total  numeric     NOT NULL,
    kpis         integer     NOT NULL,
    recorded_at  timestamptz NOT NULL
);
CREATE INDEX report_evaluations_period_idx ON report_evaluations (starts_on, ends_on);
CREATE INDEX report_evaluations_partner_idx ON report_evaluations (partner_id, position);
COMMENT ON TABLE report_evaluations IS 'One row per Partner.Evaluated: scores per KPI (0-100); the average is score_total / kpis, poor below 60.';

CREATE TABLE report_corrective_plans (
    plan_id      uuid        PRIMARY KEY,
    partner_id   uuid        NOT NULL,
    actions      jsonb       NOT NULL,
    due_on       date        NOT NULL,
    status       text        NOT NULL,
    recorded_at  timestamptz NOT NULL,
    closed_at    timestamptz,
    position     bigint      NOT NULL,
    event_id     uuid        NOT NULL
);
CREATE INDEX report_corrective_plans_partner_idx ON report_corrective_plans (partner_id, recorded_at);
COMMENT ON TABLE report_corrective_plans IS 'Corrective plans: actions, due date, open until closed as met or failed.';
COMMENT ON COLUMN report_corrective_plans.position IS 'The Partner.CorrectivePlanRecorded event.';
