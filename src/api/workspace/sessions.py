"""Signing in to the auditor workspace: an auditor token pasted once becomes a session cookie.

- The cookie holds a random session id (256 bits), never the token; the database keeps only
  its SHA-256 (`audit_sessions`), as it does for tokens. HttpOnly (no script reads it),
  SameSite=Strict (no other site's page sends it), Path=/audit, Secure when the browser is on
  https (behind a proxy: as the trusted proxy says, or as the public origin says).
- A session stands while its token does: every page looks the token up again, so a revoked
  token ends its sessions at the next click; sessions also end after `SESSION_HOURS`.
- Every POST form carries a CSRF token checked against the server's copy: the session's own
  once signed in, and before that (the sign-in form) a random one in a cookie of its own
  (double submit). SameSite=Strict already keeps other sites' forms out; the token keeps out
  a sibling site sharing the registrable domain, for which SameSite does not apply.
- "This server's own origin" is the public origin when the operator sets one
  (`CHANNEL_DOMAIN_PUBLIC_ORIGIN`, docs/deploy.md), else the scheme and host the request
  arrived with — which behind a TLS-terminating proxy are the browser's only when uvicorn
  trusts that proxy's X-Forwarded-Proto (`serve --forwarded-allow-ips`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response

from api.tokens import Principal, authenticate

SESSION_COOKIE = "cd_audit_session"
CSRF_COOKIE = "cd_audit_csrf"
COOKIE_PATH = "/audit"
SESSION_HOURS = 8
REQUIRED_ROLE = "auditor"
PUBLIC_ORIGIN_VARIABLE = "CHANNEL_DOMAIN_PUBLIC_ORIGIN"
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf_token: str


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


def public_origin(value: str | None = None) -> str | None:
    """The origin the operator says browsers use (`CHANNEL_DOMAIN_PUBLIC_ORIGIN`, or `value`),
    as a browser writes it in `Origin`: `https://host[:port]`, lower case, no default port.
    None when unset; ValueError when it is not an origin (so a typo stops start-up rather than
    refusing every sign-in)."""
    given = (os.environ.get(PUBLIC_ORIGIN_VARIABLE, "") if value is None else value).strip()
    if not given:
        return None
    problem = f"{PUBLIC_ORIGIN_VARIABLE} must be an origin such as https://audit.example.com, not {given!r}"
    try:
        parts = urlsplit(given)
        port = parts.port
    except ValueError:
        raise ValueError(problem) from None
    if (parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname or parts.username or parts.password
            or parts.path not in ("", "/") or parts.query or parts.fragment):
        raise ValueError(problem)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return _origin(parts.scheme, host if port is None else f"{host}:{port}")


def _origin(scheme: str, netloc: str) -> str:
    scheme, netloc = scheme.lower(), netloc.lower()
    host, _, port = netloc.rpartition(":") if not netloc.endswith("]") else (netloc, "", "")
    if host and port.isdigit() and int(port) == _DEFAULT_PORTS.get(scheme):
        netloc = host
    return f"{scheme}://{netloc}"


def _configured_origin(request: Request) -> str | None:
    # Read once when the app is made (pages.install), so every request of a process agrees.
    return getattr(request.app.state, "audit_public_origin", None)


def own_origin(request: Request) -> str:
    """This server's origin as the browser sees it: the configured public origin, else the
    request's scheme and host (uvicorn puts a trusted proxy's X-Forwarded-Proto into the scheme)."""
    return _configured_origin(request) or _origin(request.url.scheme, request.url.netloc)


def _secure(request: Request) -> bool:
    return own_origin(request).startswith("https://")


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=_secure(request))


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request))


def csrf_for_sign_in(request: Request) -> str:
    """The sign-in form's CSRF token: the one already in its cookie, or a new one (which the
    page then sets)."""
    current = request.cookies.get(CSRF_COOKIE, "")
    return current if len(current) == 43 else secrets.token_urlsafe(32)


def same(given: str | None, expected: str | None) -> bool:
    return bool(given) and bool(expected) and hmac.compare_digest(str(given), str(expected))


def from_same_origin(request: Request) -> bool:
    """A POST whose Origin (when the browser sends one) is this server's own."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return origin.rstrip("/").lower() == own_origin(request)


def open_session(conn: Any, token: str) -> tuple[str, Principal] | str:
    """A new session for `token`: (session id, principal), or why not (a sentence for the page)."""
    principal = authenticate(conn, token)
    if principal is None:
        return "This token is unknown or revoked. 令牌无效或已撤销。"
    if REQUIRED_ROLE not in principal.roles:
        return "This token does not carry the auditor role. 该令牌没有审计员角色。"
    session_id = secrets.token_urlsafe(32)
    with conn.transaction():
        conn.execute(
            "INSERT INTO audit_sessions (session_sha256, token_id, csrf_token, expires_at)"
            " VALUES (%s, %s, %s, now() + %s)",
            (_digest(session_id), principal.token_id, secrets.token_urlsafe(32), timedelta(hours=SESSION_HOURS)),
        )
        # Expired sessions of anyone go at each sign-in: the table stays as small as the live ones.
        conn.execute("DELETE FROM audit_sessions WHERE expires_at < now()")
    return session_id, principal


def current(conn: Any, request: Request) -> Session | None:
    """The signed-in auditor of this request, or None (no cookie, expired, token revoked, or
    the token no longer an auditor's)."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id or len(session_id) > 100:
        return None
    row = conn.execute(
        "SELECT t.token_id, t.actor, t.roles, s.csrf_token FROM audit_sessions s"
        " JOIN api_tokens t USING (token_id)"
        " WHERE s.session_sha256 = %s AND s.expires_at > now() AND t.revoked_at IS NULL",
        (_digest(session_id),),
    ).fetchone()
    if row is None or REQUIRED_ROLE not in row["roles"]:
        return None
    return Session(Principal(actor=row["actor"], roles=tuple(row["roles"]), token_id=row["token_id"]),
                   row["csrf_token"])


def close_session(conn: Any, request: Request) -> None:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        with conn.transaction():
            conn.execute("DELETE FROM audit_sessions WHERE session_sha256 = %s", (_digest(session_id),))
