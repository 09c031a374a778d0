-- depends: 0013.money
--
-- People and targets (issue 13, items 11-13 and trainings).
--
-- Employee logins: the actor name an employee's tokens carry, unique among employees. Written
-- in the transaction of the hiring event, so two hires racing for one login cannot both win;
-- the application also reads it to see which employee an actor is (domain.md §5).

CREATE TABLE employee_logins (
    login        text PRIMARY KEY,
    employee_id  uuid NOT NULL UNIQUE
);
COMMENT ON TABLE employee_logins IS 'Each employee''s login (the actor its tokens name); a login is never reused.';

-- The December review can only be missed when it was possible: a contract whose review
-- deadline (31 December of the year before it ends) falls before the hire date could never be
-- reviewed (reviews are recorded in December, never before the hire), so it raises nothing.
ALTER TABLE employee_contracts ADD COLUMN hired_on date;
COMMENT ON COLUMN employee_contracts.hired_on IS 'The hire date; no review can be recorded before it.';

CREATE OR REPLACE VIEW audit_findings_0009 AS
SELECT * FROM audit_findings_0008
UNION ALL
SELECT 'contract_review_missing',
       c.employee_id,
       format('contract ends on %s; no review recorded by %s', c.contract_ends_on,
              make_date(extract(year FROM c.contract_ends_on)::int - 1, 12, 31)),
       ARRAY[c.position],
       make_date(extract(year FROM c.contract_ends_on)::int, 1, 1)
FROM employee_contracts c
WHERE c.status IN ('probation', 'regular')
  AND c.contract_ends_on IS NOT NULL
  AND c.reviewed_on IS NULL
  AND make_date(extract(year FROM c.contract_ends_on)::int - 1, 12, 31) < company_today()
  AND make_date(extract(year FROM c.contract_ends_on)::int - 1, 12, 31) >= c.hired_on;

-- Targets: goals of counted KPIs, results entered at closing and who entered them (they take
-- effect on someone else's confirmation), and what the computed KPIs count.
ALTER TABLE targets ADD COLUMN kpi_goals jsonb NOT NULL DEFAULT '{}';
ALTER TABLE targets ADD COLUMN results_entered_by text;
COMMENT ON COLUMN targets.kpi_goals IS 'Counted KPI -> its goal (new_partners, active_second_tier_agents, training_pass_rate).';
COMMENT ON COLUMN targets.kpi_results IS 'Results entered at closing: proposed while status is closing, confirmed once closed.';

CREATE TABLE target_recruitments (
    partner_id    uuid   PRIMARY KEY,
    recruited_by  uuid   NOT NULL,
    approved_on   date,
    position      bigint NOT NULL,
    event_id      uuid   NOT NULL
);
CREATE INDEX target_recruitments_recruiter_idx ON target_recruitments (recruited_by, approved_on);
COMMENT ON TABLE target_recruitments IS 'Partners recruited by an employee, and the day (Beijing time) their application was approved.';

CREATE TABLE target_trainings (
    position     bigint  PRIMARY KEY,
    event_id     uuid    NOT NULL UNIQUE,
    partner_id   uuid    NOT NULL,
    training_id  uuid    NOT NULL,
    held_on      date    NOT NULL,
    trainer_id   uuid    NOT NULL,
    attendees    integer NOT NULL,
    passed       integer NOT NULL
);
CREATE INDEX target_trainings_trainer_idx ON target_trainings (trainer_id, held_on);

-- Who reported to whom from which day (hire, transfers): a team is its leader and everyone
-- reporting to them, directly or not, on the day of each sale.
CREATE TABLE target_reporting_lines (
    employee_id  uuid   NOT NULL,
    from_on      date   NOT NULL,
    manager_id   uuid,
    position     bigint NOT NULL,
    event_id     uuid   NOT NULL,
    PRIMARY KEY (employee_id, from_on, position)
);
COMMENT ON TABLE target_reporting_lines IS 'Each employee''s manager from a day on (hire, transfer); the latest row on or before a day holds.';

-- Whether `member` is `leader` or reports to them, directly or not, on `day`. The walk up the
-- lines stops at 64 levels, so a cycle of transfers can never make it run for ever.
CREATE FUNCTION in_team_of(leader uuid, member uuid, day date) RETURNS boolean
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE up (employee_id, depth) AS (
        SELECT member, 0
        UNION ALL
        SELECT (SELECT l.manager_id FROM target_reporting_lines l
                WHERE l.employee_id = up.employee_id AND l.from_on <= day
                ORDER BY l.from_on DESC, l.position DESC LIMIT 1),
               up.depth + 1
        FROM up
        WHERE up.employee_id IS NOT NULL AND up.employee_id <> leader AND up.depth < 64
    )
    SELECT EXISTS (SELECT 1 FROM up WHERE up.employee_id = leader)
$$;

-- Both read models gained columns or tables that only a replay fills: they start again from
-- the first event (the projection runner does it on its next pass).
TRUNCATE targets, employee_contracts;
DELETE FROM projection_checkpoints WHERE name IN ('target_attainment', 'employee_contracts');

ALTER TABLE employee_contracts ALTER COLUMN hired_on SET NOT NULL;
