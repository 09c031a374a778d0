-- depends: 0009.employee-contracts
--
-- Commission statements (domain.md §6). `commission_lines` is a ledger: a line once written is
-- never changed, so a statement as known at any past time is the lines recorded by then.
-- Retroactive changes arrive as adjustment lines in the month they are recorded.

CREATE TABLE commission_partners (
    partner_id       uuid    PRIMARY KEY,
    kind             text    NOT NULL,
    commission_rate  numeric,
    position         bigint  NOT NULL,
    event_id         uuid    NOT NULL
);
COMMENT ON COLUMN commission_partners.commission_rate IS 'A broker''s rate on each deal; null for other kinds.';

CREATE TABLE commission_contracts (
    contract_id  uuid    PRIMARY KEY,
    partner_id   uuid    NOT NULL,
    fee_rate     numeric,
    position     bigint  NOT NULL,
    event_id     uuid    NOT NULL
);
COMMENT ON COLUMN commission_contracts.fee_rate IS 'A consignee''s fee rate on proceeds; null for other kinds.';

CREATE TABLE commission_terms (
    position      bigint      PRIMARY KEY,
    event_id      uuid        NOT NULL UNIQUE,
    contract_id   uuid        NOT NULL,
    effective_on  date,
    terms         jsonb       NOT NULL,
    recorded_at   timestamptz NOT NULL
);
CREATE INDEX commission_terms_contract_idx ON commission_terms (contract_id, position);
COMMENT ON COLUMN commission_terms.effective_on IS 'Null for the terms the contract was drafted with (in force from its start).';

CREATE TABLE commission_lines (
    position         bigint      NOT NULL,
    line_no          integer     NOT NULL,
    event_id         uuid        NOT NULL,
    partner_id       uuid        NOT NULL,
    contract_id      uuid,
    period           text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('sale', 'return', 'deal', 'adjustment')),
    order_id         text,
    business_date    date,
    amount           numeric     NOT NULL,
    rate             numeric,
    commission       numeric     NOT NULL,
    fee_rate         numeric,
    corrects_period  text,
    recorded_at      timestamptz NOT NULL,
    PRIMARY KEY (position, line_no),
    CHECK ((kind = 'adjustment') = (corrects_period IS NOT NULL))
);
CREATE INDEX commission_lines_statement_idx ON commission_lines (partner_id, period, position);
CREATE INDEX commission_lines_contract_idx ON commission_lines (contract_id, position);
CREATE INDEX commission_lines_period_idx ON commission_lines (period, partner_id);
COMMENT ON TABLE commission_lines IS 'One row per slice of a sale, return or deal at one rate, or per adjustment; never updated.';

CREATE TABLE commission_payouts (
    position     bigint      PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    partner_id   uuid        NOT NULL,
    period       text        NOT NULL,
    step         text        NOT NULL CHECK (step IN ('prepared', 'verified', 'approved', 'paid')),
    amount       numeric,
    total_due    numeric,
    recorded_at  timestamptz NOT NULL
);
CREATE INDEX commission_payouts_partner_idx ON commission_payouts (partner_id, period, position);
COMMENT ON COLUMN commission_payouts.total_due IS 'On the prepared step: the statement''s total due when the payout was prepared.';

-- Every statement as it stands now, negative balances carried forward month to month.
CREATE VIEW commission_statements AS
WITH RECURSIVE months AS (
    SELECT l.partner_id,
           l.period,
           coalesce(sum(l.amount) FILTER (WHERE l.kind IN ('sale', 'deal')), 0) AS gross_sales,
           coalesce(-sum(l.amount) FILTER (WHERE l.kind = 'return'), 0) AS returns,
           coalesce(sum(l.commission) FILTER (WHERE l.kind <> 'adjustment'), 0) AS commission,
           coalesce(sum(l.commission) FILTER (WHERE l.kind = 'adjustment'), 0) AS adjustments,
           round(coalesce(sum(l.amount * l.fee_rate), 0), 2) AS fees,
           row_number() OVER (PARTITION BY l.partner_id ORDER BY l.period) AS n
    FROM commission_lines l
    GROUP BY l.partner_id, l.period
), folded AS (
    SELECT m.*, 0::numeric AS carried_in FROM months m WHERE m.n = 1
    UNION ALL
    SELECT m.*, least(0, f.commission + f.adjustments + f.carried_in)
    FROM folded f JOIN months m ON m.partner_id = f.partner_id AND m.n = f.n + 1
)
SELECT f.partner_id,
       f.period,
       f.gross_sales,
       f.returns,
       f.gross_sales - f.returns AS net_sales,
       f.commission,
       f.adjustments,
       f.carried_in,
       greatest(0, f.commission + f.adjustments + f.carried_in) AS total_due,
       least(0, f.commission + f.adjustments + f.carried_in) AS carried_out,
       CASE WHEN p.kind = 'consignee' THEN f.fees END AS fees,
       CASE WHEN p.kind = 'consignee' THEN f.gross_sales - f.returns - f.commission - f.fees END AS remittance_due
FROM folded f
JOIN commission_partners p ON p.partner_id = f.partner_id;

ALTER VIEW audit_findings RENAME TO audit_findings_0009;

CREATE VIEW audit_findings AS
SELECT * FROM audit_findings_0009
UNION ALL
-- A payout prepared for another amount than the statement's total due when it was prepared.
SELECT 'payout_not_total_due',
       o.partner_id,
       format('payout for %s prepared for %s; the statement''s total due was %s', o.period, o.amount, o.total_due),
       ARRAY[o.position],
       o.recorded_at::date
FROM commission_payouts o
WHERE o.step = 'prepared' AND o.amount <> o.total_due;
