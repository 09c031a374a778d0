"""The auditor workspace at /audit/ in process (docs/audit.md, "The auditor workspace"): signing
in with a token (a session cookie, never the token; CSRF tokens on the forms), and each page's
content. The browser drives the same pages in tests/api/test_workspace_browser.py."""

from __future__ import annotations

import html
import json
import re
import threading

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.tokens import revoke_token
from channel_domain.store import checkpoints, integrity
from tests.api.flows import ERP, HR, approved_partner, post, signed_contract

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: str) -> str:
    return CSRF.search(page).group(1)


def sign_in(client: TestClient, token: str, target: str = "/audit/"):
    form = client.get("/audit/sign-in", params={"next": target})
    assert form.status_code == 200
    return client.post("/audit/sign-in", data={"csrf_token": csrf_of(form.text), "token": token, "next": target},
                       follow_redirects=False)


@pytest.fixture
def auditor(api):
    """The api's client, signed in to the workspace as an auditor."""
    signed = sign_in(api.client, api.token("auditor-1", "auditor"))
    assert signed.status_code == 303, signed.text
    return api.client


def text_of(page: str) -> str:
    """A page's words, as a reader sees them (tags and entities gone)."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_signing_in_sets_a_session_cookie_never_the_token_and_signing_out_ends_it(api):
    client = api.client
    # Any page without a session goes to the sign-in form, saying where it was going.
    first = client.get("/audit/findings?kind=visits_below_minimum", follow_redirects=False)
    assert (first.status_code, first.headers["location"]) == (
        303, "/audit/sign-in?next=%2Faudit%2Ffindings%3Fkind%3Dvisits_below_minimum")

    form = client.get("/audit/sign-in")
    assert form.headers["content-type"].startswith("text/html")
    csrf_cookie = form.headers["set-cookie"]
    assert "cd_audit_csrf=" in csrf_cookie and "HttpOnly" in csrf_cookie and "SameSite=strict" in csrf_cookie
    assert "Path=/audit" in csrf_cookie and "Secure" not in csrf_cookie  # plain http here
    assert "frame-ancestors 'none'" in form.headers["content-security-policy"]
    token = api.token("auditor-1", "auditor")

    # A form without the right CSRF token, or from another origin, signs nobody in.
    refused = client.post("/audit/sign-in", data={"csrf_token": "forged", "token": token}, follow_redirects=False)
    assert refused.status_code == 403 and "cd_audit_session" not in refused.headers.get("set-cookie", "")
    other_site = client.post("/audit/sign-in", data={"csrf_token": csrf_of(form.text), "token": token},
                             headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert other_site.status_code == 403
    # A token that is no auditor's, or no token at all, is refused on the form, saying why.
    not_auditor = client.post("/audit/sign-in", data={"csrf_token": csrf_of(form.text),
                                                      "token": api.token("fin-1", "finance")})
    assert not_auditor.status_code == 401 and "auditor role" in not_auditor.text
    unknown = client.post("/audit/sign-in", data={"csrf_token": csrf_of(form.text), "token": "cd_nothing"})
    assert unknown.status_code == 401 and "unknown or revoked" in unknown.text

    signed = sign_in(client, token, "/audit/findings?kind=visits_below_minimum")
    assert (signed.status_code, signed.headers["location"]) == (303, "/audit/findings?kind=visits_below_minimum")
    session_cookie = [c for c in signed.headers.get_list("set-cookie") if c.startswith("cd_audit_session=")][0]
    assert "HttpOnly" in session_cookie and "SameSite=strict" in session_cookie and "Path=/audit" in session_cookie
    session_id = client.cookies.get("cd_audit_session")
    assert session_id and token not in session_id and token not in signed.headers["location"]
    with psycopg.connect(api.database_url) as conn:  # only a digest of the session id is kept
        stored = conn.execute("SELECT session_sha256 FROM audit_sessions").fetchall()
    assert len(stored) == 1 and session_id.encode() not in bytes(stored[0][0])

    home = client.get("/audit/")
    assert home.status_code == 200 and "auditor-1" in home.text and token not in home.text
    # A redirect target elsewhere is not followed.
    assert sign_in(client, token, "https://evil.example/").headers["location"] == "/audit/"

    # Signing out needs the session's CSRF token; it deletes the session.
    assert client.post("/audit/sign-out", data={"csrf_token": "forged"}).status_code == 403
    out = client.post("/audit/sign-out", data={"csrf_token": csrf_of(client.get("/audit/").text)},
                      follow_redirects=False)
    assert (out.status_code, out.headers["location"]) == (303, "/audit/sign-in")
    assert client.get("/audit/", follow_redirects=False).status_code == 303


def test_a_revoked_token_ends_its_sessions_and_https_cookies_are_secure(api, database_url):
    client = api.client
    sign_in(client, api.token("auditor-2", "auditor"))
    assert client.get("/audit/", follow_redirects=False).status_code == 200
    with psycopg.connect(database_url, autocommit=True) as conn:
        token_id = conn.execute("SELECT token_id FROM api_tokens WHERE actor = 'auditor-2'").fetchone()[0]
        assert revoke_token(conn, token_id)
    assert client.get("/audit/", follow_redirects=False).status_code == 303

    with TestClient(create_app(database_url), base_url="https://testserver") as secure:
        signed = sign_in(secure, api.token("auditor-3", "auditor"))
        assert all("Secure" in cookie for cookie in signed.headers.get_list("set-cookie"))


def test_a_record_timeline_is_paged_by_version_with_state_and_diff_pages(api, auditor):
    partner = approved_partner(api, "retailer", name="华东渠道有限公司")
    contract = signed_contract(api, partner)  # 4 events
    for n, amount in enumerate(("60000.00", "40000.00")):
        post(api, f"/v1/contracts/{contract}/sales", {"order_id": f"SO-{n}", "amount": amount,
                                                      "sold_on": "2026-03-02"}, ERP, **{"X-Correlation-Id": f"b-{n}"})
    api.catch_up()

    found = auditor.get("/audit/search", params={"q": "华东"})
    assert f"/audit/records/{partner}" in found.text and f"/audit/records/{contract}" in found.text
    by_id = auditor.get("/audit/search", params={"q": contract}, follow_redirects=False)
    assert by_id.headers["location"] == f"/audit/records/{contract}"

    page = auditor.get(f"/audit/records/{contract}", params={"after": 2, "limit": 2})
    words = text_of(page.text)
    assert "合同 Contract" in words and "华东渠道有限公司" in words
    assert re.findall(r'id="v(\d+)"', page.text) == ["3", "4"]
    assert "?after=4&amp;limit=2" in page.text and "?after=0&amp;limit=2" in page.text  # next, first
    last = auditor.get(f"/audit/records/{contract}", params={"after": 4, "limit": 2})
    assert re.findall(r'id="v(\d+)"', last.text) == ["5", "6"]
    assert "/audit/requests/b-1" in last.text and "60000.00" in last.text and "erp" in last.text

    state = auditor.get(f"/audit/records/{contract}/state", params={"version": 5})
    assert "60000.00" in state.text and "100000.00" not in state.text
    diff = auditor.get(f"/audit/records/{contract}/diff", params={"from": "4", "to": "6"})
    words = text_of(diff.text)
    assert "销售总额 Gross sales 0.00 100000.00" in words
    assert "订单数 Orders 0 2" in words
    ambiguous = auditor.get(f"/audit/records/{contract}/diff", params={"from": "2026-03-01", "to": "6"})
    assert ambiguous.status_code == 422 and "names no single moment" in ambiguous.text

    assert "Contract.SaleRecorded" in auditor.get("/audit/requests/b-0").text
    # Signing the partner's first contract activated the partner: nested under the signing.
    signing = api.get(f"/v1/contracts/{contract}/history").json()["items"][3]
    request = auditor.get(f"/audit/requests/{signing['correlation_id']}")
    assert re.search(r"Contract\.Signed</strong>.*?<ul class=\"causation\">\s*<li>\s*<a[^>]*><strong>Partner\.Activated",
                     request.text, re.S)
    assert auditor.get(f"/audit/records/{partner}/state", params={"version": 99}).status_code == 404


def test_a_statement_shows_each_lines_proof_against_the_latest_checkpoint(api, auditor, tmp_path, database_url):
    partner = approved_partner(api, "retailer")
    contract = signed_contract(api, partner)
    post(api, f"/v1/contracts/{contract}/sales", {"order_id": "A", "amount": "60000.00", "sold_on": "2026-03-02"},
         ERP)
    api.catch_up()
    page = f"/audit/statements/{partner}/2026-03"
    assert "尚无签名检查点 No checkpoint signed yet" in auditor.get(page).text

    key = checkpoints.create_key_file(tmp_path / "checkpoint.pem")
    checkpoints.make(api.department.event_recorder.datastore, key)
    post(api, f"/v1/contracts/{contract}/sales", {"order_id": "B", "amount": "40000.00", "sold_on": "2026-03-09"},
         ERP)
    api.catch_up()
    words = text_of(auditor.get(page).text)
    # Sale A is in the signed tree; B came after the checkpoint.
    assert "已验证 Verified: 1" in words and "尚未进入检查点 Not yet in a checkpoint: 1" in words
    assert "验证失败 Failed: 0" in words and "有效 Valid" in words
    assert "应付合计 Total due 3000.00" in words  # 1 800.00 + 1 200.00
    # The statement as known before sale B and now: B's line appeared, with its event and request.
    made_at = auditor.get("/audit/verification").text
    known = re.search(r"签署时间 Signed at</dt><dd>([^<]+)</dd>", made_at).group(1)
    diff = auditor.get(f"{page}/diff", params={"from": known, "to": "2099-01-01T00:00:00Z"})
    words = text_of(diff.text)
    assert "应付合计 Total due 1800.00 3000.00" in words
    assert re.findall(r'href="/audit/events/(\d+)"', diff.text) and "Contract.SaleRecorded" in diff.text
    assert auditor.get(f"{page}/diff", params={"from": "3", "to": "4"}).status_code == 422

    # Someone rewrites sale A's stored bytes: its line no longer proves.
    with psycopg.connect(database_url, autocommit=True) as conn:
        position = conn.execute("SELECT min(position) FROM commission_lines WHERE order_id = 'A'").fetchone()[0]
        conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        try:
            conn.execute("UPDATE events SET state = convert_to(replace(convert_from(state, 'UTF8'), '60000',"
                         " '66000'), 'UTF8') WHERE position = %s", (position,))
        finally:
            conn.execute("ALTER TABLE events ENABLE TRIGGER USER")
    words = text_of(auditor.get(page).text)
    assert "验证失败 Failed: 1" in words and "do not hash to its leaf" in words


def test_findings_are_filtered_by_kind_and_link_to_their_events(api, auditor):
    forgotten = post(api, "/v1/employees", {"name": "A", "role": "sales_rep", "hired_on": "2025-01-06",
                                            "login": "li.lei"}, HR, 201).json()  # never regularized
    api.catch_up()
    page = auditor.get("/audit/findings", params={"kind": "probation_overdue"})
    assert page.status_code == 200 and 'value="probation_overdue" selected' in page.text
    assert f"/audit/records/{forgotten['id']}" in page.text
    position = forgotten["position"]
    assert f'href="/audit/events/{position}"' in page.text
    # The event link opens the record's timeline at that event.
    shown = auditor.get(f"/audit/events/{position}", follow_redirects=False)
    assert shown.headers["location"] == f"/audit/records/{forgotten['id']}?after=0#v1"
    timeline = auditor.get(shown.headers["location"])
    assert "员工 Employee" in timeline.text and "li.lei" in timeline.text
    assert "Employee.Hired" in timeline.text or "Hired" in timeline.text
    other = auditor.get("/audit/findings", params={"kind": "visits_below_minimum"})
    assert f"/audit/records/{forgotten['id']}" not in other.text
    assert auditor.get("/audit/findings", params={"kind": "nonsense"}).status_code == 422


def test_verification_shows_the_latest_checkpoint_and_runs_the_full_check_on_request(api, auditor, tmp_path):
    signed_contract(api, approved_partner(api, "retailer"))
    api.catch_up()
    key = checkpoints.create_key_file(tmp_path / "checkpoint.pem")
    made = checkpoints.make(api.department.event_recorder.datastore, key)
    page = text_of(auditor.get("/audit/verification").text)
    assert f"树大小 Tree size {made.tree_size}" in page and made.root_hash.hex() in page
    assert f"密钥 Key ID {made.key_id}" in page and "有效 Valid" in page and made.timestamp in page
    full = auditor.post("/audit/verification", data={"csrf_token": csrf_of(auditor.get("/audit/").text)})
    assert full.status_code == 200 and "结果 Result 通过 OK" in text_of(full.text)


def test_the_full_check_is_a_csrf_checked_form_and_runs_once_at_a_time(api, auditor, monkeypatch):
    """It reads the whole log: a GET (a link, a prefetch, a reloading tab) never starts it, and
    while one runs another is told to come back, with Retry-After (across processes and nodes:
    test_full_check_limit.py)."""
    signed_contract(api, approved_partner(api, "retailer"))
    checks, started, release = [], threading.Event(), threading.Event()
    whole_log = integrity.verify

    def slow_verify(datastore, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        checks.append(1)
        started.set()
        assert release.wait(30)
        return whole_log(datastore, *args, **kwargs)

    monkeypatch.setattr(integrity, "verify", slow_verify)
    page = auditor.get("/audit/verification", params={"full": "true"})
    assert page.status_code == 200 and "结果 Result" not in text_of(page.text) and checks == []
    csrf = csrf_of(page.text)
    assert 'method="post" action="/audit/verification"' in page.text
    forged = auditor.post("/audit/verification", data={"csrf_token": "forged"})
    other_site = auditor.post("/audit/verification", data={"csrf_token": csrf},
                              headers={"Origin": "https://evil.example"})
    assert forged.status_code == other_site.status_code == 403 and checks == []

    first: list = []
    running = threading.Thread(target=lambda: first.append(auditor.post("/audit/verification",
                                                                        data={"csrf_token": csrf})))
    running.start()
    try:
        assert started.wait(30)
        second = auditor.post("/audit/verification", data={"csrf_token": csrf})
        assert second.status_code == 503 and int(second.headers["retry-after"]) >= 1
        assert "A full check is already running" in text_of(second.text) and checks == [1]
    finally:
        release.set()
        running.join(30)
    assert first[0].status_code == 200 and "结果 Result 通过 OK" in text_of(first[0].text)
    again = auditor.post("/audit/verification", data={"csrf_token": csrf})  # the lock was let go
    assert again.status_code == 200 and checks == [1, 1]


def test_a_form_with_too_many_fields_or_too_large_is_refused_with_a_page_and_signs_no_one_in(api, database_url):
    client = api.client
    token = api.token("auditor-1", "auditor")
    form = client.get("/audit/sign-in")
    fields = {"csrf_token": csrf_of(form.text), "token": token, "next": "/audit/"}
    crowded = client.post("/audit/sign-in", data={**fields, **{f"x{n}": "1" for n in range(8)}})
    assert crowded.status_code == 400 and crowded.headers["content-type"].startswith("text/html")
    assert "表单无效 Bad form" in crowded.text and "at most 10 fields" in crowded.text
    padded = client.post("/audit/sign-in", data={**fields, "pad": "x" * 20_000})
    assert padded.status_code == 413 and "表单过大 Form too large" in padded.text

    def chunks():  # no Content-Length: refused once past the limit
        yield f"csrf_token={fields['csrf_token']}&token={token}&pad=".encode()
        for _ in range(40):
            yield b"x" * 1_000

    streamed = client.post("/audit/sign-in", content=chunks(),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert streamed.status_code == 413 and "表单过大 Form too large" in streamed.text
    assert all("cd_audit_session" not in answer.headers.get("set-cookie", "")
               for answer in (crowded, padded, streamed))
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM audit_sessions").fetchone()[0] == 0
    # The same form, within bounds, signs in; signing out is read the same way.
    assert client.post("/audit/sign-in", data=fields, follow_redirects=False).status_code == 303
    out = client.post("/audit/sign-out", data={"csrf_token": csrf_of(client.get("/audit/").text),
                                               **{f"x{n}": "1" for n in range(10)}})
    assert out.status_code == 400 and client.get("/audit/", follow_redirects=False).status_code == 200


def test_a_long_timeline_is_read_a_page_at_a_time(api, auditor, monkeypatch):
    """Keyset pagination on versions: each page reads its 50 events from the log and no more, so
    the last page of a long history costs what the first does (its time at 10 000 events is P11's,
    in `make bench`)."""
    contract = signed_contract(api, approved_partner(api, "retailer"))
    sales = b"".join(json.dumps({"kind": "sale", "contract_id": contract, "order_id": f"SO-{n}", "amount": "10.00",
                                 "sold_on": "2026-03-02"}).encode() + b"\n" for n in range(296))
    imported = api.client.post("/v1/sales/import", content=sales, headers={
        **api.headers(*ERP[:1], *ERP[1]), "Content-Type": "application/x-ndjson"})
    assert imported.json()["accepted"] == 296, imported.text
    api.catch_up()
    recorder = api.department.event_recorder
    read: list[int] = []
    stream_rows = recorder.stream_rows

    def counted(*args, **kwargs):
        rows = list(stream_rows(*args, **kwargs))
        read.append(len(rows))
        return iter(rows)

    monkeypatch.setattr(recorder, "stream_rows", counted)
    latest = 300
    for after, links in ((0, {"下一页 Next", "最新 Latest"}), (150, {"最早 First", "上一页 Previous", "下一页 Next", "最新 Latest"}),
                         (250, {"最早 First", "上一页 Previous"})):
        read.clear()
        page = auditor.get(f"/audit/records/{contract}", params={"after": after})
        assert page.status_code == 200
        versions = [int(v) for v in re.findall(r'id="v(\d+)"', page.text)]
        assert versions == list(range(after + 1, min(after + 50, latest) + 1))
        assert read == [len(versions)]  # the page's events only, in one read
        nav = re.search(r'<nav class="pages">(.*?)</nav>', page.text, re.S).group(1)
        assert {text_of(link).strip().strip("«‹›» ") for link in re.findall(r"<a [^>]*>(.*?)</a>", nav)} == links
