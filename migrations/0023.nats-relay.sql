-- depends: 0022.webhooks
--
-- The NATS JetStream relay (`channel-domain relay nats`, issue 15): how far each relay has
-- published. A relay is named by the JetStream stream it publishes to and its subject prefix;
-- its row moves only after JetStream acknowledged every event up to `position`.
CREATE TABLE nats_relay_checkpoints (
    stream          text        NOT NULL,
    subject_prefix  text        NOT NULL,
    position        bigint      NOT NULL DEFAULT 0 CHECK (position >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    holder          text,
    holder_since    timestamptz,
    PRIMARY KEY (stream, subject_prefix)
);
COMMENT ON TABLE nats_relay_checkpoints IS 'One row per NATS relay (stream, subject prefix): the last log position JetStream acknowledged.';
COMMENT ON COLUMN nats_relay_checkpoints.holder IS 'Host and pid of the relay that last took this relay''s lock (it may have died since: `relay status` says whether the lock is held).';
