-- depends: 0024.webhook-waiting-lines
--
-- Sales reports (issue 16): one row per sale, return and broker deal with what a report groups
-- by (partner and its kind, region, product, employee, business date), and the same summed per
-- month for each of those dimensions, so that a report of a month, a quarter or a year sums a
-- few hundred rows rather than every sale. Kept by the `sales_reports` projection alone
-- (`channel-domain rebuild sales_reports`); a database that already has events fills them
-- from the first event.

CREATE TABLE sales_report_partners (
    partner_id  uuid   PRIMARY KEY,
    kind        text   NOT NULL,
    name        text   NOT NULL,
    position    bigint NOT NULL,
    event_id    uuid   NOT NULL
);

CREATE TABLE sales_report_contracts (
    contract_id  uuid   PRIMARY KEY,
    partner_id   uuid   NOT NULL,
    position     bigint NOT NULL,
    event_id     uuid   NOT NULL
);

CREATE TABLE sales_report_lines (
    position       bigint  PRIMARY KEY,
    event_id       uuid    NOT NULL,
    kind           text    NOT NULL CHECK (kind IN ('sale', 'return', 'deal')),
    business_date  date    NOT NULL,
    partner_id     uuid    NOT NULL,
    partner_kind   text    NOT NULL,
    contract_id    uuid,
    order_id       text    NOT NULL,
    product        text,
    region         text,
    employee_id    uuid,
    amount         numeric NOT NULL CHECK (amount >= 0)
);
-- A period's rows in the order the detail report pages and streams them.
CREATE INDEX sales_report_lines_date_idx ON sales_report_lines (business_date, position);
-- A return finds the sale it returns (its product, region and employee).
CREATE INDEX sales_report_lines_order_idx ON sales_report_lines (contract_id, order_id) WHERE kind = 'sale';

CREATE TABLE sales_report_months (
    month      text    NOT NULL,
    dimension  text    NOT NULL CHECK (dimension IN ('partner', 'region', 'product', 'employee')),
    key        text    NOT NULL,
    gross      numeric NOT NULL,
    returns    numeric NOT NULL,
    orders     bigint  NOT NULL,
    PRIMARY KEY (dimension, month, key)
);
COMMENT ON COLUMN sales_report_months.key IS
    'The partner or employee id as text, the region or product as recorded; empty when the sale named none.';
