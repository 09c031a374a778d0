-- depends: 0012.speed
--
-- Issue 13, money: consignee remittances and housing subsidies on the statements, and a
-- consignee's month settled once (domain.md §6): S = proceeds − commission − fees − adjustments,
-- remitted by the consignee when S ≥ 0, paid by the company when S < 0, nothing carried.

CREATE TABLE commission_remittances (
    position     bigint      PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    partner_id   uuid        NOT NULL,
    period       text        NOT NULL,
    amount       numeric     NOT NULL,
    received_on  date        NOT NULL,
    recorded_at  timestamptz NOT NULL
);
CREATE INDEX commission_remittances_partner_idx ON commission_remittances (partner_id, period, position);
COMMENT ON TABLE commission_remittances IS 'One row per Partner.RemittanceReceived: a consignee''s remittance for the month it pays for.';

CREATE TABLE commission_housing_subsidies (
    position     bigint      PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    partner_id   uuid        NOT NULL,
    period       text        NOT NULL,
    step         text        NOT NULL CHECK (step IN ('prepared', 'verified', 'approved', 'paid')),
    amount       numeric,
    account      text,
    recorded_at  timestamptz NOT NULL
);
CREATE INDEX commission_housing_subsidies_partner_idx ON commission_housing_subsidies (partner_id, period, position);
COMMENT ON TABLE commission_housing_subsidies IS 'One row per housing-subsidy step of a partner and month; never part of total_due.';
COMMENT ON COLUMN commission_housing_subsidies.amount IS 'On the prepared step (and a grant from before issue 13, read as prepared).';
COMMENT ON COLUMN commission_housing_subsidies.account IS 'On the prepared and paid steps: the approved payout account.';

DROP VIEW commission_statements;
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
), settled AS (
    SELECT f.*,
           p.kind = 'consignee' AS consignee,
           f.gross_sales - f.returns - f.commission - f.fees - f.adjustments AS settlement,
           coalesce((SELECT sum(r.amount) FROM commission_remittances r
                     WHERE r.partner_id = f.partner_id AND r.period = f.period), 0) AS remitted
    FROM folded f
    JOIN commission_partners p ON p.partner_id = f.partner_id
)
SELECT s.partner_id,
       s.period,
       s.gross_sales,
       s.returns,
       s.gross_sales - s.returns AS net_sales,
       s.commission,
       s.adjustments,
       CASE WHEN s.consignee THEN 0 ELSE s.carried_in END AS carried_in,
       CASE WHEN s.consignee THEN greatest(0, -s.settlement)
            ELSE greatest(0, s.commission + s.adjustments + s.carried_in) END AS total_due,
       CASE WHEN s.consignee THEN 0 ELSE least(0, s.commission + s.adjustments + s.carried_in) END AS carried_out,
       CASE WHEN s.consignee THEN s.fees END AS fees,
       CASE WHEN s.consignee THEN greatest(0, s.settlement) END AS remittance_due,
       CASE WHEN s.consignee THEN s.remitted END AS remitted,
       CASE WHEN s.consignee THEN greatest(0, s.settlement) - s.remitted END AS remittance_outstanding
FROM settled s;
COMMENT ON VIEW commission_statements IS 'Every partner''s statement as it stands now; a consignee''s month settles once (remittance_due or total_due, never both) and carries nothing.';
