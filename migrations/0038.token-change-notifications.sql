-- depends: 0037.month-totals-last-position
--
-- Issue 18, P2: each server process keeps the principals of the bearer tokens it has seen
-- (src/api/token_cache.py) instead of asking this table on every request, and forgets them
-- all when a token changes. It hears of a change by LISTEN: this trigger notifies in the very
-- transaction that revokes, deletes or rewrites a token, whoever writes it — the CLI, a server,
-- an operator's own SQL. A process that is not listening caches nothing.

CREATE FUNCTION api_tokens_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('api_tokens_changed', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER api_tokens_changed AFTER UPDATE OR DELETE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION api_tokens_changed();
CREATE TRIGGER api_tokens_truncated AFTER TRUNCATE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION api_tokens_changed();

COMMENT ON FUNCTION api_tokens_changed() IS 'Tells every listening server process (LISTEN api_tokens_changed) that a token was revoked, deleted or rewritten: they drop the principals they keep.';
