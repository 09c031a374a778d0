-- depends: 0002.append-events
--
-- Bearer tokens for the HTTP API, issued by `channel-domain tokens create`. Only a SHA-256
-- digest of each token is kept: tokens are 256 random bits, so a slow password hash adds
-- nothing, and a stolen table reveals no usable token.

CREATE TABLE api_tokens (
    token_id     uuid        PRIMARY KEY,
    token_sha256 bytea       NOT NULL UNIQUE,
    actor        text        NOT NULL,
    roles        text[]      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
