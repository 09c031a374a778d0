-- depends: 0006.partner-activity
--
-- Target attainment: each target as it stands (amount after approved revisions, KPI
-- weights, results given at closing), and every return, so that net sales can be credited
-- to the employee on the sale, to the partner, or to a team through its decomposition.

CREATE TABLE targets (
    target_id      uuid    PRIMARY KEY,
    assignee_type  text    NOT NULL,
    assignee_id    text    NOT NULL,
    period         text    NOT NULL,
    starts_on      date    NOT NULL,
    ends_on        date    NOT NULL,
    amount         numeric NOT NULL,
    kpis           jsonb   NOT NULL,
    parent_id      uuid,
    status         text    NOT NULL,
    kpi_results    jsonb   NOT NULL DEFAULT '{}',
    position       bigint  NOT NULL,
    event_id       uuid    NOT NULL
);
CREATE INDEX targets_parent_idx ON targets (parent_id);
COMMENT ON COLUMN targets.position IS 'The last event that changed the row.';

CREATE TABLE partner_returns (
    position     bigint  PRIMARY KEY,
    event_id     uuid    NOT NULL UNIQUE,
    partner_id   uuid    NOT NULL,
    contract_id  uuid    NOT NULL,
    order_id     text    NOT NULL,
    returned_on  date    NOT NULL,
    amount       numeric NOT NULL,
    employee_id  uuid
);
CREATE INDEX partner_returns_partner_idx ON partner_returns (partner_id, returned_on);
CREATE INDEX partner_orders_employee_idx ON partner_orders (employee_id, sold_on);
CREATE INDEX partner_returns_employee_idx ON partner_returns (employee_id, returned_on);
