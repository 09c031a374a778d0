-- depends: 0011.hash-chain
--
-- A return is credited like the order it returns; the partner activity projection finds that
-- order by contract and order id, which without this index was a scan of every order.

CREATE INDEX partner_orders_order_idx ON partner_orders (contract_id, order_id);
