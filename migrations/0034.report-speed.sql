-- depends: 0033.merkle-checkpoints
--
-- Issue 16, P10: the commission-efficiency and receivables reports summed every commission line
-- of the months they read on each request (a month of the bench's year is ~80 000 lines, a
-- receivables date every consignee line up to it). `commission_month_totals` keeps those sums
-- per partner and month instead, written by the `commissions` projection in the batch that
-- writes the lines (one upsert per partner and month a batch touches), so each report reads a
-- few hundred rows whatever the number of sales.
--
-- Each column is the sum over the month's lines exactly as the statements compute it (same
-- filters, same scale, null when the month has no line of that sort), so any sum of these
-- sums is the sum over the lines. `fees` is not rounded: a statement rounds the month's fee
-- once (to cents), after summing.
--
-- The `commissions` projection already has a checkpoint in a database that has events, so it
-- will not replay the log for this table: it is filled here from the lines written so far.

CREATE TABLE commission_month_totals (
    partner_id       uuid    NOT NULL,
    period           text    NOT NULL,
    sales            numeric,
    returns          numeric,
    line_commission  numeric,
    adjustments      numeric,
    adjusted_sales   numeric,
    fees             numeric,
    lines            bigint  NOT NULL CHECK (lines > 0),
    PRIMARY KEY (partner_id, period)
);
CREATE INDEX commission_month_totals_period_idx ON commission_month_totals (period, partner_id);
COMMENT ON TABLE commission_month_totals IS 'Per partner and month, the sums of its commission_lines a statement uses; kept by the commissions projection with the lines.';
COMMENT ON COLUMN commission_month_totals.sales IS 'sum(amount) of sale and deal lines.';
COMMENT ON COLUMN commission_month_totals.returns IS 'sum(amount) of return lines (negative, as the lines hold them).';
COMMENT ON COLUMN commission_month_totals.line_commission IS 'sum(commission) of sale, return and deal lines.';
COMMENT ON COLUMN commission_month_totals.adjustments IS 'sum(commission) of adjustment lines.';
COMMENT ON COLUMN commission_month_totals.adjusted_sales IS 'sum(amount) of adjustment lines (proceeds moved out of a closed month).';
COMMENT ON COLUMN commission_month_totals.fees IS 'sum(amount * fee_rate), unrounded (a consignee''s fees before the month''s rounding to cents).';
COMMENT ON COLUMN commission_month_totals.lines IS 'The number of lines summed.';

INSERT INTO commission_month_totals
    (partner_id, period, sales, returns, line_commission, adjustments, adjusted_sales, fees, lines)
SELECT partner_id, period,
       sum(amount) FILTER (WHERE kind IN ('sale', 'deal')),
       sum(amount) FILTER (WHERE kind = 'return'),
       sum(commission) FILTER (WHERE kind <> 'adjustment'),
       sum(commission) FILTER (WHERE kind = 'adjustment'),
       sum(amount) FILTER (WHERE kind = 'adjustment'),
       sum(amount * fee_rate),
       count(*)
FROM commission_lines
GROUP BY partner_id, period;
