"""The auditor workspace behind a TLS-terminating proxy (docs/deploy.md, "The auditor workspace
behind a proxy"): a real uvicorn server, configured as `serve` configures it, is reached from
two loopback addresses — 127.0.0.1, the trusted proxy, and 127.0.0.2, a peer it does not trust
— with the headers a proxy in front of `https://audit.example.com` sends."""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg
import pytest
import uvicorn

from api.app import create_app
from api.cli import DEFAULT_TRUSTED_PROXIES, proxy_settings
from api.workspace import sessions
from tests.servers import free_port

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PUBLIC = "https://audit.example.com"
# What nginx's `proxy_set_header` lines in deploy.md send for a browser on https://audit.example.com.
FORWARDED = {"Host": "audit.example.com", "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}


@contextmanager
def serving(database_url: str, forwarded_allow_ips: str) -> Iterator[str]:
    """The service on a free loopback port in a thread, with `serve`'s proxy settings."""
    port = free_port()
    config = uvicorn.Config(create_app(database_url), host="127.0.0.1", port=port, log_level="warning",
                            **proxy_settings(forwarded_allow_ips))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class Peer:
    """Requests from one loopback address, cookies sent by hand: a cookie marked Secure is
    what the browser keeps, and httpx's own jar would not send it back over plain http."""

    def __init__(self, base: str, address: str) -> None:
        self.client = httpx.Client(base_url=base, transport=httpx.HTTPTransport(local_address=address),
                                   timeout=30, follow_redirects=False)
        self.cookies: dict[str, str] = {}

    def send(self, method: str, path: str, headers: dict[str, str], **kwargs) -> httpx.Response:  # noqa: ANN003
        cookie = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        self.client.cookies.clear()
        answer = self.client.request(method, path, headers={**headers, **({"Cookie": cookie} if cookie else {})},
                                     **kwargs)
        for line in answer.headers.get_list("set-cookie"):
            name, _, rest = line.partition("=")
            self.cookies[name] = rest.split(";")[0].strip('"')
        return answer


def set_cookie(answer: httpx.Response, name: str) -> str:
    return next(line for line in answer.headers.get_list("set-cookie") if line.startswith(f"{name}="))


def sign_in(peer: Peer, token: str, headers: dict[str, str]) -> httpx.Response:
    form = peer.send("GET", "/audit/sign-in", headers)
    assert form.status_code == 200
    return peer.send("POST", "/audit/sign-in", headers,
                     data={"csrf_token": CSRF.search(form.text).group(1), "token": token, "next": "/audit/"})


def sessions_stored(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM audit_sessions").fetchone()[0]


def test_behind_a_trusted_proxy_the_browsers_https_origin_signs_in_with_secure_cookies(api, database_url):
    token = api.token("auditor-1", "auditor")
    with serving(database_url, DEFAULT_TRUSTED_PROXIES) as base:
        proxy = Peer(base, "127.0.0.1")
        form = proxy.send("GET", "/audit/sign-in", FORWARDED)
        assert "Secure" in set_cookie(form, sessions.CSRF_COOKIE)

        # A page of another site posting the form (the browser names that site in Origin) is refused.
        csrf = CSRF.search(form.text).group(1)
        foreign = proxy.send("POST", "/audit/sign-in", {**FORWARDED, "Origin": "https://evil.example"},
                             data={"csrf_token": csrf, "token": token})
        assert foreign.status_code == 403 and sessions.SESSION_COOKIE not in foreign.headers.get("set-cookie", "")
        assert sessions_stored(database_url) == 0

        signed = sign_in(proxy, token, {**FORWARDED, "Origin": PUBLIC})
        assert (signed.status_code, signed.headers["location"]) == (303, "/audit/"), signed.text
        assert "Secure" in set_cookie(signed, sessions.SESSION_COOKIE)
        home = proxy.send("GET", "/audit/", FORWARDED)
        assert home.status_code == 200 and "auditor-1" in home.text

        out = proxy.send("POST", "/audit/sign-out", {**FORWARDED, "Origin": PUBLIC},
                         data={"csrf_token": CSRF.search(home.text).group(1)})
        assert out.status_code == 303 and "Secure" in set_cookie(out, sessions.SESSION_COOKIE)
        assert sessions_stored(database_url) == 0


def test_the_same_headers_from_a_peer_not_trusted_are_ignored(api, database_url):
    token = api.token("auditor-1", "auditor")
    with serving(database_url, DEFAULT_TRUSTED_PROXIES) as base:
        stranger = Peer(base, "127.0.0.2")  # not in 127.0.0.1,::1
        form = stranger.send("GET", "/audit/sign-in", FORWARDED)
        assert "Secure" not in set_cookie(form, sessions.CSRF_COOKIE)
        # Its X-Forwarded-Proto is not believed: the request is plain http, so the https origin
        # is not this server's, and neither is a foreign one.
        for origin in (PUBLIC, "https://evil.example"):
            refused = sign_in(stranger, token, {**FORWARDED, "Origin": origin})
            assert refused.status_code == 403
            assert f"sent from {origin}, which is not this server's address (http://audit.example.com)" in html.unescape(refused.text)
        assert sessions_stored(database_url) == 0
        # What it did reach is a plain-http server: signed in there, the cookie is not Secure.
        plain = sign_in(stranger, token, {**FORWARDED, "Origin": "http://audit.example.com"})
        assert plain.status_code == 303 and "Secure" not in set_cookie(plain, sessions.SESSION_COOKIE)

    # Given as the proxy's address instead, the same peer is believed.
    with serving(database_url, "127.0.0.2") as base:
        proxy = Peer(base, "127.0.0.2")
        signed = sign_in(proxy, token, {**FORWARDED, "Origin": PUBLIC})
        assert signed.status_code == 303 and "Secure" in set_cookie(signed, sessions.SESSION_COOKIE)


def test_a_public_origin_is_the_only_origin_accepted_and_makes_cookies_secure(api, database_url, monkeypatch):
    token = api.token("auditor-1", "auditor")
    monkeypatch.setenv(sessions.PUBLIC_ORIGIN_VARIABLE, "HTTPS://Audit.Example.com:443/")
    # No proxy believed at all: the public origin alone decides.
    with serving(database_url, "") as base:
        direct = Peer(base, "127.0.0.1")
        form = direct.send("GET", "/audit/sign-in", {})
        assert "Secure" in set_cookie(form, sessions.CSRF_COOKIE)
        for origin in (base, "https://evil.example", "http://audit.example.com", "https://audit.example.com:8443"):
            refused = sign_in(direct, token, {"Origin": origin})
            assert refused.status_code == 403, origin
        assert sessions_stored(database_url) == 0
        signed = sign_in(direct, token, {"Origin": PUBLIC})
        assert signed.status_code == 303 and "Secure" in set_cookie(signed, sessions.SESSION_COOKIE)


@pytest.mark.parametrize("origin", ["audit.example.com", "https://audit.example.com/audit/", "ftp://audit.example.com",
                                    "https://user@audit.example.com", "https://audit.example.com:99999"])
def test_a_public_origin_that_is_no_origin_stops_the_app_being_made(database_url, monkeypatch, origin):
    monkeypatch.setenv(sessions.PUBLIC_ORIGIN_VARIABLE, origin)
    with pytest.raises(ValueError, match="must be an origin such as https://audit.example.com"):
        create_app(database_url)
