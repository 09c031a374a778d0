-- depends: 0012.speed
--
-- Terminating a partner ends its contracts: find them without scanning the registry.

CREATE INDEX contracts_in_force_partner_idx ON contracts_in_force (partner_id);
