-- depends: 0032.reporting-lines-and-short-accounts
--
-- Issue 17, parts 1-2: an RFC 9162 Merkle tree over the event hashes in position order, signed
-- checkpoints of it, and the public keys that verify them (docs/audit.md, "Signed checkpoints
-- and Merkle proofs").
--
-- The tree is written by the `audit_merkle` projection, like the seals: evidence, never rebuilt
-- from a log that may have been tampered with. Every perfect subtree is stored as it completes
-- (about 2n rows for n leaves), so any root, inclusion proof or consistency proof of any tree size
-- reads O(log n) stored nodes and never the log.
--
-- The private signing key never enters the database: it is a file the signing process reads
-- (`channel-domain keys`). Only public keys are stored, and kept when rotated, so that every
-- checkpoint ever signed stays verifiable.

CREATE TABLE merkle_leaves (
    leaf_index bigint PRIMARY KEY CHECK (leaf_index >= 0),
    position   bigint NOT NULL UNIQUE,
    event_hash bytea  NOT NULL CHECK (length(event_hash) = 32)
);
COMMENT ON TABLE merkle_leaves IS 'Leaf i of the Merkle tree is the i-th event in position order (0-based; positions have gaps, leaf indexes do not); its input is the raw 32 bytes of the event hash.';

CREATE TABLE merkle_nodes (
    level      smallint NOT NULL CHECK (level BETWEEN 0 AND 62),
    node_index bigint   NOT NULL CHECK (node_index >= 0),
    hash       bytea    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, node_index)
);
COMMENT ON TABLE merkle_nodes IS 'The root hash of every complete (perfect) subtree: leaves [node_index * 2^level, (node_index + 1) * 2^level). Level 0: SHA-256(0x00 || event hash); above: SHA-256(0x01 || left || right) (RFC 9162, 2.1.1).';

-- Evidence: once written, never changed (TRUNCATE stays possible for the owner, as for the seals).
CREATE TRIGGER merkle_leaves_are_immutable
    BEFORE UPDATE OR DELETE ON merkle_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_rewrite();
CREATE TRIGGER merkle_nodes_are_immutable
    BEFORE UPDATE OR DELETE ON merkle_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_rewrite();


CREATE TABLE checkpoint_keys (
    key_id     text        PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),
    public_key bytea       NOT NULL UNIQUE CHECK (length(public_key) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz
);
COMMENT ON TABLE checkpoint_keys IS 'Ed25519 public keys checkpoints are signed with, current and retired; key_id = the first 16 hex digits of SHA-256 of the raw 32-byte public key. The private keys are files, never here.';


CREATE TABLE merkle_checkpoints (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tree_size  bigint      NOT NULL CHECK (tree_size >= 0),
    root_hash  bytea       NOT NULL CHECK (length(root_hash) = 32),
    "timestamp" text       NOT NULL CHECK ("timestamp" ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$'),
    key_id     text        NOT NULL REFERENCES checkpoint_keys (key_id),
    signature  bytea       NOT NULL CHECK (length(signature) = 64),
    made_at    timestamptz NOT NULL DEFAULT now(),
    -- The body is what was signed, kept verbatim; it can say nothing the columns do not.
    body       text        NOT NULL,
    CHECK (body = 'channel-domain/checkpoint/v1' || E'\n' || tree_size::text || E'\n' || encode(root_hash, 'hex')
                  || E'\n' || "timestamp" || E'\n')
);
COMMENT ON TABLE merkle_checkpoints IS 'Signed checkpoints: body = "channel-domain/checkpoint/v1\n<tree_size>\n<root hex>\n<timestamp>\n", signature = Ed25519 over the body''s UTF-8 bytes.';
CREATE INDEX merkle_checkpoints_made_at ON merkle_checkpoints (made_at);

CREATE TRIGGER merkle_checkpoints_are_immutable
    BEFORE UPDATE OR DELETE ON merkle_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_rewrite();
