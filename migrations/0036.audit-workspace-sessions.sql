-- depends: 0035.witness-publications
--
-- Issue 17, part 5: sessions of the auditor workspace at /audit/ (docs/audit.md, "The auditor
-- workspace"). An auditor signs in by pasting a token once; the browser then holds only a
-- random session id in an HttpOnly cookie, never the token. Like tokens, only a digest of the
-- session id is kept. A session stands while its token does: revoking the token (or deleting
-- it) ends every session opened with it, and signing out deletes the row.

CREATE TABLE audit_sessions (
    session_sha256 bytea       PRIMARY KEY CHECK (length(session_sha256) = 32),
    token_id       uuid        NOT NULL REFERENCES api_tokens (token_id) ON DELETE CASCADE,
    csrf_token     text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);

CREATE INDEX audit_sessions_expiry ON audit_sessions (expires_at);
CREATE INDEX audit_sessions_token ON audit_sessions (token_id);
