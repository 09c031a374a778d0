-- depends: 0008.audit-findings
--
-- Each employee's current labour contract, for the December review: a contract ending in
-- the coming year must have a review recorded by 31 December.

CREATE TABLE employee_contracts (
    employee_id         uuid   PRIMARY KEY,
    status              text   NOT NULL,
    contract_starts_on  date   NOT NULL,
    contract_ends_on    date,
    reviewed_on         date,
    position            bigint NOT NULL,
    event_id            uuid   NOT NULL
);
COMMENT ON COLUMN employee_contracts.contract_ends_on IS 'Null for an open-ended contract.';
COMMENT ON COLUMN employee_contracts.reviewed_on IS 'The review of the current contract, if recorded.';

ALTER VIEW audit_findings RENAME TO audit_findings_0008;

CREATE VIEW audit_findings AS
SELECT * FROM audit_findings_0008
UNION ALL
-- A labour contract ending in a year whose preceding 31 December has passed without a review.
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
  AND make_date(extract(year FROM c.contract_ends_on)::int - 1, 12, 31) < current_date;
