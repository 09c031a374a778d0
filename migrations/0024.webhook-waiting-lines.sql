-- depends: 0023.nats-relay
--
-- Operator review M3: a delivery pass (and /metrics) must not aggregate a subscription's whole backlog. A
-- line's first row is the only one with failures (`attempts` > 0), so the lines waiting for a
-- retry, and when the next is due, are found here without reading the rest.
CREATE INDEX webhook_lines_waiting ON webhook_lines (subscription_id, next_attempt_at)
    WHERE attempts > 0 AND parked_at IS NULL;

-- Parked lines, by their first row (the only one marked), for /metrics' parked count.
CREATE INDEX webhook_lines_parked ON webhook_lines (subscription_id, stream_id) WHERE parked_at IS NOT NULL;
