-- depends: 0005.projections
--
-- Partner activity: who each partner is (kind, grade, parent), which contract belongs to whom,
-- every visit and every order — enough to compare visits with the grade's monthly minimum
-- and to count second-tier agents that actually sold in a period.

CREATE TABLE partner_directory (
    partner_id         uuid   PRIMARY KEY,
    kind               text   NOT NULL,
    grade              text,
    parent_partner_id  uuid,
    position           bigint NOT NULL,
    event_id           uuid   NOT NULL
);
CREATE INDEX partner_directory_parent_idx ON partner_directory (parent_partner_id);

CREATE TABLE contract_directory (
    contract_id  uuid   PRIMARY KEY,
    partner_id   uuid   NOT NULL,
    position     bigint NOT NULL,
    event_id     uuid   NOT NULL
);

CREATE TABLE partner_visits (
    position     bigint PRIMARY KEY,
    event_id     uuid   NOT NULL UNIQUE,
    partner_id   uuid   NOT NULL,
    visited_on   date   NOT NULL,
    employee_id  uuid   NOT NULL
);
CREATE INDEX partner_visits_partner_idx ON partner_visits (partner_id, visited_on);

CREATE TABLE partner_orders (
    position     bigint  PRIMARY KEY,
    event_id     uuid    NOT NULL UNIQUE,
    partner_id   uuid    NOT NULL,
    contract_id  uuid    NOT NULL,
    order_id     text    NOT NULL,
    sold_on      date    NOT NULL,
    amount       numeric NOT NULL,
    employee_id  uuid
);
CREATE INDEX partner_orders_partner_idx ON partner_orders (partner_id, sold_on);
