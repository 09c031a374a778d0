-- depends: 0024.webhook-waiting-lines
--
-- Record lists (issue 16): GET /v1/partners, /v1/contracts, /v1/employees and /v1/targets are
-- served from these tables, one row per record as it stands after its last event, kept by the
-- `record_lists` projection. A new projection: it has no checkpoint yet, so it replays the log
-- from the first event when a worker first runs it.
--
-- Every row carries the record's `version` (the stream's version after its last event, as
-- GET /v1/{record}/{id} answers it), the time and position of its first event (the lists' order
-- and cursor: a record never moves in it) and of its last (`updated_at`, `position`, `event_id`).
-- No personal data in clear: an employee's name is kept sealed (`pii:v1:…`, as in the events
-- and `audit_events`) and dropped when it is erased.

CREATE TABLE partner_list (
    partner_id         uuid        PRIMARY KEY,
    version            bigint      NOT NULL,
    status             text        NOT NULL,
    kind               text        NOT NULL,
    name               text        NOT NULL,
    region             text,
    grade              text,
    commission_rate    numeric,
    parent_partner_id  uuid,
    recruited_by       uuid,
    terminated_on      date,
    created_position   bigint      NOT NULL UNIQUE,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    position           bigint      NOT NULL,
    event_id           uuid        NOT NULL
);
CREATE INDEX partner_list_status_idx ON partner_list (status, created_position);
CREATE INDEX partner_list_kind_idx ON partner_list (kind, created_position);
CREATE INDEX partner_list_parent_idx ON partner_list (parent_partner_id);
CREATE INDEX partner_list_recruiter_idx ON partner_list (recruited_by);
CREATE INDEX partner_list_updated_idx ON partner_list (updated_at);
COMMENT ON TABLE partner_list IS 'Each partner as it stands (GET /v1/partners), kept by the record_lists projection.';
COMMENT ON COLUMN partner_list.version IS 'The record''s version after its last event (as GET /v1/partners/{id} gives it).';
COMMENT ON COLUMN partner_list.status IS 'applied, approved, rejected, active, suspended or terminated.';
COMMENT ON COLUMN partner_list.commission_rate IS 'A broker''s rate per deal; null for other kinds (their rates are on contracts).';
COMMENT ON COLUMN partner_list.created_position IS 'Position of the Partner.Applied event: the list''s order and cursor.';
COMMENT ON COLUMN partner_list.updated_at IS 'When the last event of the partner was recorded (UTC).';
COMMENT ON COLUMN partner_list.position IS 'The last event of the partner.';

CREATE TABLE contract_list (
    contract_id       uuid        PRIMARY KEY,
    version           bigint      NOT NULL,
    status            text        NOT NULL,
    partner_id        uuid        NOT NULL,
    partner_kind      text        NOT NULL,
    starts_on         date        NOT NULL,
    ends_on           date        NOT NULL,
    signed_on         date,
    terminated_on     date,
    territory         text,
    commission        jsonb       NOT NULL,
    amendments        jsonb       NOT NULL DEFAULT '[]',
    fee_rate          numeric,
    exclusive         boolean     NOT NULL,
    products          jsonb,
    renewals          integer     NOT NULL DEFAULT 0,
    created_position  bigint      NOT NULL UNIQUE,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    position          bigint      NOT NULL,
    event_id          uuid        NOT NULL
);
CREATE INDEX contract_list_partner_idx ON contract_list (partner_id, created_position);
CREATE INDEX contract_list_status_idx ON contract_list (status, created_position);
CREATE INDEX contract_list_territory_idx ON contract_list (territory);
CREATE INDEX contract_list_updated_idx ON contract_list (updated_at);
COMMENT ON TABLE contract_list IS 'Each contract as it stands (GET /v1/contracts), kept by the record_lists projection.';
COMMENT ON COLUMN contract_list.version IS 'The record''s version after its last event (as GET /v1/contracts/{id} gives it); every sale and return moves it.';
COMMENT ON COLUMN contract_list.status IS 'draft, submitted, approved, signed or terminated as recorded; a signed contract whose ends_on has passed reads as expired in the API.';
COMMENT ON COLUMN contract_list.ends_on IS 'The end date, moved by approved renewals.';
COMMENT ON COLUMN contract_list.terminated_on IS 'A termination''s effective date: the contract is in force up to the day before.';
COMMENT ON COLUMN contract_list.commission IS 'The commission terms the contract was drafted with, as in the API.';
COMMENT ON COLUMN contract_list.amendments IS 'Approved amendments, [{effective_on, commission}] in effective-date order.';
COMMENT ON COLUMN contract_list.created_position IS 'Position of the Contract.Drafted event: the list''s order and cursor.';
COMMENT ON COLUMN contract_list.updated_at IS 'When the last event of the contract was recorded (UTC).';
COMMENT ON COLUMN contract_list.position IS 'The last event of the contract.';

CREATE TABLE employee_list (
    employee_id           uuid        PRIMARY KEY,
    version               bigint      NOT NULL,
    status                text        NOT NULL,
    role                  text        NOT NULL,
    hired_on              date        NOT NULL,
    manager_id            uuid,
    login                 text,
    probation_ends_on     date,
    contract_starts_on    date        NOT NULL,
    contract_ends_on      date,
    left_on               date,
    personal_data_erased  boolean     NOT NULL DEFAULT false,
    name_sealed           text,
    created_position      bigint      NOT NULL UNIQUE,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    position              bigint      NOT NULL,
    event_id              uuid        NOT NULL
);
CREATE INDEX employee_list_status_idx ON employee_list (status, created_position);
CREATE INDEX employee_list_manager_idx ON employee_list (manager_id);
CREATE INDEX employee_list_updated_idx ON employee_list (updated_at);
COMMENT ON TABLE employee_list IS 'Each employee as it stands (GET /v1/employees), kept by the record_lists projection. No personal data in clear.';
COMMENT ON COLUMN employee_list.version IS 'The record''s version after its last event (as GET /v1/employees/{id} gives it).';
COMMENT ON COLUMN employee_list.status IS 'probation, regular, probation_failed, dismissed or separated.';
COMMENT ON COLUMN employee_list.contract_ends_on IS 'The current labour contract''s end; null when open-ended.';
COMMENT ON COLUMN employee_list.name_sealed IS 'The name as sealed in the events (pii:v1:…), readable only with the employee''s key; null once erased. Personal data: never expose.';
COMMENT ON COLUMN employee_list.created_position IS 'Position of the Employee.Hired event: the list''s order and cursor.';
COMMENT ON COLUMN employee_list.updated_at IS 'When the last event of the employee was recorded (UTC).';
COMMENT ON COLUMN employee_list.position IS 'The last event of the employee.';

CREATE TABLE target_list (
    target_id         uuid        PRIMARY KEY,
    version           bigint      NOT NULL,
    status            text        NOT NULL,
    assignee_type     text        NOT NULL,
    assignee_id       text        NOT NULL,
    period            text        NOT NULL,
    amount            numeric     NOT NULL,
    kpis              jsonb       NOT NULL,
    parent_id         uuid,
    created_position  bigint      NOT NULL UNIQUE,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    position          bigint      NOT NULL,
    event_id          uuid        NOT NULL
);
CREATE INDEX target_list_assignee_idx ON target_list (assignee_id, created_position);
CREATE INDEX target_list_period_idx ON target_list (period, created_position);
CREATE INDEX target_list_parent_idx ON target_list (parent_id);
CREATE INDEX target_list_updated_idx ON target_list (updated_at);
COMMENT ON TABLE target_list IS 'Each sales target as it stands (GET /v1/targets), kept by the record_lists projection.';
COMMENT ON COLUMN target_list.version IS 'The record''s version after its last event (as GET /v1/targets/{id} gives it).';
COMMENT ON COLUMN target_list.status IS 'open, closing (results entered, awaiting confirmation) or closed.';
COMMENT ON COLUMN target_list.amount IS 'CNY, after approved revisions.';
COMMENT ON COLUMN target_list.created_position IS 'Position of the SalesTarget.Set event: the list''s order and cursor.';
COMMENT ON COLUMN target_list.updated_at IS 'When the last event of the target was recorded (UTC).';
COMMENT ON COLUMN target_list.position IS 'The last event of the target.';
