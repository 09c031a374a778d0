"""The auditor workspace at /audit/ (docs/audit.md, "The auditor workspace"): server-rendered
pages over the same read functions the API answers from, for an auditor signed in with a
token. No JavaScript; every page is a GET but signing in and out and the full verification
(POST forms with a CSRF token: the last reads the whole log, so no link, prefetch or reload
loop may start it, and the service runs one at a time)."""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from api import diffs, full_check
from api.deps import department_of
from api.errors import ApiProblem
from api.routes import audit
from api.views import VIEWS, history_view, record_view
from api.workspace import forms, labels, proofs, sessions
from channel_domain.aggregate import event_type_of
from channel_domain.application import ChannelDepartment
from channel_domain.errors import NotFound
from channel_domain.store import merkle
from channel_domain.values import plain_json
from projections.commissions import statement

HERE = FilePath(__file__).parent
PAGE_SIZE = 50
RECORD_TYPES = {record_type.__name__: record_type for record_type in VIEWS}
SEARCHABLE = ("Partner", "Contract", "Employee", "SalesTarget")

templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["label"] = labels.label
templates.env.globals["PROOF_STATUS"] = labels.PROOF_STATUS


def _shown(value: Any) -> str:
    """A value as a page shows it: text as is, anything structured as compact JSON."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(plain_json(value), ensure_ascii=False, indent=None)


templates.env.filters["shown"] = _shown

# What every page answers with: nothing cached, framed or run from elsewhere.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
                               " frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it a browser sends `Origin: null` on the forms, which the origin check refuses.
    "Referrer-Policy": "same-origin",
}

router = APIRouter(prefix="/audit", include_in_schema=False)


class _SignInRequired(Exception):
    def __init__(self, target: str) -> None:
        self.target = target


def _signed_in(request: Request) -> sessions.Session:
    app = department_of(request)
    with app.event_recorder.datastore.get_connection() as conn:
        session = sessions.current(conn, request)
    if session is None:
        raise _SignInRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    request.state.principal = session.principal  # the request log names the auditor
    return session


Auditor = Annotated[sessions.Session, Depends(_signed_in)]


def _page(request: Request, name: str, session: sessions.Session | None, status: int = 200,
          headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"session": session, **context}, status_code=status,
                                      headers={**SECURITY_HEADERS, **(headers or {})})


def _refusal_page(kwargs: dict[str, Any], refusal: NotFound | ApiProblem) -> HTMLResponse:
    if isinstance(refusal, NotFound):
        return _page(kwargs["request"], "error.html", kwargs.get("session"), 404, title="未找到 Not found",
                     detail=str(refusal))
    return _page(kwargs["request"], "error.html", kwargs.get("session"), refusal.status, refusal.headers,
                 title="无法显示 Cannot show this", detail=refusal.detail)


def _html_errors(page: Callable[..., Any]) -> Callable[..., Any]:
    """A refusal on a page is a page saying why, with its status (and Retry-After, say): not a
    problem+json. For the pages (plain functions) and for the forms (coroutines: they await the body)."""
    if inspect.iscoroutinefunction(page):

        @functools.wraps(page)
        async def answer_form(*args: Any, **kwargs: Any) -> Response:
            try:
                return await page(*args, **kwargs)
            except (NotFound, ApiProblem) as refusal:
                return _refusal_page(kwargs, refusal)

        return answer_form

    @functools.wraps(page)
    def answer(*args: Any, **kwargs: Any) -> Response:
        try:
            return page(*args, **kwargs)
        except (NotFound, ApiProblem) as refusal:
            return _refusal_page(kwargs, refusal)

    return answer


def _department(request: Request) -> ChannelDepartment:
    return department_of(request)


def _local_target(target: str | None) -> str:
    """Where to go after signing in: a page of the workspace only (never another site)."""
    if target and target.startswith("/audit/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/audit/"


def _refused(request: Request, session: sessions.Session | None) -> HTMLResponse:
    """A POST form refused: sent from another origin, or without the right CSRF token."""
    detail = "The form's CSRF token does not match: reload the page and try again. 表单令牌不匹配,请重新加载页面后再试。"
    if not sessions.from_same_origin(request):
        # Said in full: behind a proxy not configured for it, the browser's own origin lands here.
        detail = (f"This form was sent from {request.headers.get('origin', '')[:200]}, which is not this server's"
                  f" address ({sessions.own_origin(request)}). Behind a proxy, the operator names the proxy or the"
                  " public address (docs/deploy.md, \"The auditor workspace behind a proxy\")."
                  " 表单来源与本服务器的地址不符。")
    return _page(request, "error.html", session, 403, title="请求被拒绝 Refused", detail=detail)


# --- signing in and out ---------------------------------------------------------------


@router.get("")
def workspace_root() -> RedirectResponse:
    return RedirectResponse("/audit/", status_code=308)


@router.get("/sign-in")
def sign_in_form(request: Request, next: str | None = None) -> HTMLResponse:  # noqa: A002
    csrf = sessions.csrf_for_sign_in(request)
    response = _page(request, "sign_in.html", None, csrf_token=csrf, next=_local_target(next), problem=None)
    sessions.set_cookie(request, response, sessions.CSRF_COOKIE, csrf, None)
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await forms.read(request)
    expected = request.cookies.get(sessions.CSRF_COOKIE)
    if not sessions.from_same_origin(request) or not sessions.same(form.get("csrf_token"), expected):
        return _refused(request, None)
    token = form.get("token", "").strip()
    target = _local_target(form.get("next"))

    def open_session() -> tuple[str, Any] | str:
        app = department_of(request)
        with app.event_recorder.datastore.get_connection() as conn:
            return sessions.open_session(conn, token) if token else "Paste a token. 请粘贴令牌。"

    opened = await run_in_threadpool(open_session)
    if isinstance(opened, str):
        csrf = sessions.csrf_for_sign_in(request)
        response = _page(request, "sign_in.html", None, 401, csrf_token=csrf, next=target, problem=opened)
        sessions.set_cookie(request, response, sessions.CSRF_COOKIE, csrf, None)
        return response
    session_id, _ = opened
    response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    sessions.set_cookie(request, response, sessions.SESSION_COOKIE, session_id, sessions.SESSION_HOURS * 3600)
    sessions.clear_cookie(request, response, sessions.CSRF_COOKIE)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    form = await forms.read(request)

    def close() -> bool:
        app = department_of(request)
        with app.event_recorder.datastore.get_connection() as conn:
            session = sessions.current(conn, request)
            if session is not None and not sessions.same(form.get("csrf_token"), session.csrf_token):
                return False
            sessions.close_session(conn, request)
            return True

    if not sessions.from_same_origin(request) or not await run_in_threadpool(close):
        return _refused(request, None)
    response = RedirectResponse("/audit/sign-in", status_code=303, headers=SECURITY_HEADERS)
    sessions.clear_cookie(request, response, sessions.SESSION_COOKIE)
    return response


# --- home, search -------------------------------------------------------------------------


@router.get("/")
@_html_errors
def home(request: Request, session: Auditor) -> Response:
    app = _department(request)
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        check = proofs.check_latest(curs)
    return _page(request, "home.html", session, check=check)


_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


def _record_kind(curs: Any, record_id: UUID) -> str | None:
    curs.execute("SELECT topic FROM events WHERE originator_id = %s AND originator_version = 1", (record_id,))
    row = curs.fetchone()
    return None if row is None else event_type_of(row["topic"])[0]


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@router.get("/search")
@_html_errors
def search(request: Request, session: Auditor,
           q: Annotated[str, Query(max_length=200)] = "") -> Response:
    q = q.strip()
    app = _department(request)
    results: list[dict[str, Any]] = []
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        if _UUID.fullmatch(q):
            record_id = UUID(q)
            if _record_kind(curs, record_id) is not None:
                return RedirectResponse(f"/audit/records/{record_id}", status_code=303)
        elif q:
            pattern = {"like": _like(q), "exact": q}
            curs.execute("SELECT partner_id AS id, name, kind, status FROM partner_list WHERE name ILIKE %(like)s"
                         " ORDER BY name LIMIT 50", pattern)
            results += [{"kind": "Partner", "id": r["id"], "title": r["name"], "note": f"{r['kind']} · {r['status']}"}
                        for r in curs.fetchall()]
            curs.execute("SELECT c.contract_id AS id, p.name, c.starts_on, c.ends_on, c.status FROM contract_list c"
                         " JOIN partner_list p USING (partner_id) WHERE p.name ILIKE %(like)s"
                         " ORDER BY p.name, c.starts_on LIMIT 50", pattern)
            results += [{"kind": "Contract", "id": r["id"], "title": r["name"],
                         "note": f"{r['starts_on']} – {r['ends_on']} · {r['status']}"} for r in curs.fetchall()]
            curs.execute("SELECT employee_id AS id, login, role, status FROM employee_list WHERE login ILIKE %(like)s"
                         " ORDER BY login LIMIT 50", pattern)
            results += [{"kind": "Employee", "id": r["id"], "title": r["login"], "note": f"{r['role']} · {r['status']}"}
                        for r in curs.fetchall()]
            curs.execute("SELECT target_id AS id, period, assignee_type, assignee_id, amount, status FROM target_list"
                         " WHERE period = %(exact)s OR assignee_id = %(exact)s ORDER BY period LIMIT 50", pattern)
            results += [{"kind": "SalesTarget", "id": r["id"], "title": f"{r['period']} · {r['amount']}",
                         "note": f"{r['assignee_type']} {r['assignee_id']} · {r['status']}"} for r in curs.fetchall()]
    return _page(request, "search.html", session, q=q, results=results)


# --- a record: timeline, state, diff ----------------------------------------------------


def _summary(curs: Any, kind: str, record_id: UUID) -> dict[str, Any]:
    """What the page header says of a record, from the list read models (never the whole history)."""
    summary: dict[str, Any] = {"title": str(record_id)}
    if kind == "Partner":
        curs.execute("SELECT name, kind, status, region FROM partner_list WHERE partner_id = %s", (record_id,))
        if row := curs.fetchone():
            summary = {"title": row["name"], "facts": {"kind": row["kind"], "status": row["status"],
                                                       "region": row["region"]}}
        curs.execute("SELECT DISTINCT period FROM commission_lines WHERE partner_id = %s ORDER BY period DESC",
                     (record_id,))
        summary["statements"] = [row["period"] for row in curs.fetchall()]
    elif kind == "Contract":
        curs.execute("SELECT c.partner_id, p.name, c.status, c.starts_on, c.ends_on FROM contract_list c"
                     " LEFT JOIN partner_list p USING (partner_id) WHERE c.contract_id = %s", (record_id,))
        if row := curs.fetchone():
            summary = {"title": f"{row['name']} {row['starts_on']} – {row['ends_on']}",
                       "facts": {"status": row["status"]}, "partner_id": row["partner_id"]}
    elif kind == "Employee":
        curs.execute("SELECT login, role, status FROM employee_list WHERE employee_id = %s", (record_id,))
        if row := curs.fetchone():
            summary = {"title": row["login"] or str(record_id), "facts": {"role": row["role"], "status": row["status"]}}
    elif kind == "SalesTarget":
        curs.execute("SELECT period, assignee_type, assignee_id, amount, status FROM target_list WHERE target_id = %s",
                     (record_id,))
        if row := curs.fetchone():
            summary = {"title": f"{row['period']} · {row['amount']}",
                       "facts": {"assignee_type": row["assignee_type"], "assignee_id": row["assignee_id"],
                                 "status": row["status"]}}
    return summary


def _record_head(app: ChannelDepartment, record_id: UUID) -> dict[str, Any]:
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        kind = _record_kind(curs, record_id)
        if kind is None:
            raise NotFound(f"no record {record_id}")
        summary = _summary(curs, kind, record_id)
    latest = app.event_recorder.latest_version(record_id) or 0
    return {"id": record_id, "kind": kind, "latest": latest, **summary}


@router.get("/records/{record_id}")
@_html_errors
def timeline(request: Request, session: Auditor, record_id: UUID,
             after: Annotated[int, Query(ge=0, le=2**62)] = 0,
             limit: Annotated[int, Query(ge=1, le=500)] = PAGE_SIZE) -> Response:
    app = _department(request)
    head = _record_head(app, record_id)
    # Keyset pagination on the record's versions: only this page's events are read and decoded,
    # however long the history (a contract of 10 000 sales renders a page as fast as one of 10).
    entries = app.history(record_id, after, limit) if after < head["latest"] else []
    events = [history_view(app, entry, session.principal, record_id) for entry in entries]
    pages = {
        "first": 0 if after > 0 else None,
        "previous": max(0, after - limit) if after > 0 else None,
        "next": after + limit if after + limit < head["latest"] else None,
        "last": max(0, head["latest"] - limit) if after + limit < head["latest"] else None,
    }
    return _page(request, "timeline.html", session, head=head, events=events, pages=pages, after=after,
                 limit=limit)


def _record_type(kind: str) -> Any:
    record_type = RECORD_TYPES.get(kind)
    if record_type is None:
        raise NotFound(f"records of kind {kind} have no state page")
    return record_type


@router.get("/records/{record_id}/state")
@_html_errors
def state(request: Request, session: Auditor, record_id: UUID,
          version: Annotated[int, Query(ge=1, le=2**62)]) -> Response:
    app = _department(request)
    head = _record_head(app, record_id)
    record = app.get(_record_type(head["kind"]), record_id, version=version)
    view = record_view(app, record, session.principal)
    entry = app.history(record_id, version - 1, 1)[0]
    return _page(request, "state.html", session, head=head, version=version, state=view,
                 event=history_view(app, entry, session.principal, record_id))


@router.get("/records/{record_id}/diff")
@_html_errors
def diff(request: Request, session: Auditor, record_id: UUID,
         from_: Annotated[str, Query(alias="from", max_length=64)] = "",
         to: Annotated[str, Query(max_length=64)] = "") -> Response:
    app = _department(request)
    head = _record_head(app, record_id)
    found = None
    if from_ and to:
        found = diffs.record_diff(app, _record_type(head["kind"]), record_id, head["kind"],
                                  diffs.moment("from", from_), diffs.moment("to", to), session.principal)
    return _page(request, "diff.html", session, head=head, diff=found, from_=from_, to=to)


@router.get("/events/{position}")
@_html_errors
def event_at(request: Request, session: Auditor, position: Annotated[int, Path(ge=1, le=2**62)]) -> Response:
    """An event by its position: shown where it stands in its record's timeline."""
    app = _department(request)
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute("SELECT originator_id, originator_version FROM events WHERE position = %s", (position,))
        row = curs.fetchone()
    if row is None:
        raise NotFound(f"no event at position {position}")
    version = row["originator_version"]
    return RedirectResponse(f"/audit/records/{row['originator_id']}?after={version - 1}#v{version}",
                            status_code=303)


# --- statements -------------------------------------------------------------------------

_MONTH = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


@router.get("/statements/{partner_id}/{period}")
@_html_errors
def statement_page(request: Request, session: Auditor, partner_id: UUID,
                   period: Annotated[str, Path(pattern=_MONTH)]) -> Response:
    app = _department(request)
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        found = statement(curs, partner_id, period)
        if found is None:
            raise NotFound(f"no partner {partner_id} in the commission read model")
        lines = json.loads(found.pop("lines_json"))
        check = proofs.check_latest(curs)
        line_proofs = proofs.line_proofs(curs, [line["position"] for line in lines], check)
        summary = _summary(curs, "Partner", partner_id)
    for line in lines:
        line["proof"] = line_proofs[line["position"]]
    counts = {status: sum(1 for line in lines if line["proof"].status == status) for status in labels.PROOF_STATUS}
    figures = {name: found.get(name) for name in diffs.FIGURES}
    return _page(request, "statement.html", session, partner_id=partner_id, period=period, summary=summary,
                 figures=plain_json(figures), lines=lines, disputes=plain_json(found["disputes"]),
                 adjustments=[line for line in lines if line["kind"] == "adjustment"], check=check, counts=counts)


@router.get("/statements/{partner_id}/{period}/diff")
@_html_errors
def statement_diff_page(request: Request, session: Auditor, partner_id: UUID,
                        period: Annotated[str, Path(pattern=_MONTH)],
                        from_: Annotated[str, Query(alias="from", max_length=64)] = "",
                        to: Annotated[str, Query(max_length=64)] = "") -> Response:
    app = _department(request)
    found = None
    if from_ and to:
        first, last = diffs.moment("from", from_), diffs.moment("to", to)
        if isinstance(first, int) or isinstance(last, int):
            raise ApiProblem(422, "validation_error", "a statement is compared between two times, not versions")
        with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            found = diffs.statement_diff(curs, partner_id, period, first, last)
    return _page(request, "statement_diff.html", session, partner_id=partner_id, period=period, diff=found,
                 from_=from_, to=to)


# --- findings, requests, verification -----------------------------------------------------


@router.get("/findings")
@_html_errors
def findings(request: Request, session: Auditor,
             kind: Annotated[str, Query(max_length=60)] = "",
             cursor: Annotated[str, Query(max_length=18, pattern=r"^[0-9]*$")] = "") -> Response:
    if kind and kind not in audit.FINDING_KINDS:
        raise ApiProblem(422, "validation_error", f"no finding kind {kind}")
    app = _department(request)
    found = audit.audit_findings(app, session.principal, 0, kind or None, None, cursor or None, 100)
    return _page(request, "findings.html", session, kinds=audit.FINDING_KINDS, kind=kind, found=found)


def _causation_tree(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request's events as a forest: each under the first event that caused it."""
    nodes = {event["position"]: {**event, "children": []} for event in events}
    roots = []
    for event in events:
        parents = [position for position in event["caused_by"] if position in nodes and position != event["position"]]
        (nodes[parents[0]]["children"] if parents else roots).append(nodes[event["position"]])
    return roots


@router.get("/requests/{correlation_id:path}")
@_html_errors
def causation(request: Request, session: Auditor, correlation_id: str) -> Response:
    if not re.fullmatch(r"[A-Za-z0-9._:/+=@-]{1,128}", correlation_id):
        raise NotFound(f"no events with correlation id {correlation_id}")
    app = _department(request)
    found = audit.audit_causation(correlation_id, app, session.principal, 0)
    return _page(request, "causation.html", session, correlation_id=correlation_id,
                 tree=_causation_tree(found["events"]), count=len(found["events"]))


def _log_state(app: ChannelDepartment) -> dict[str, Any]:
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        check = proofs.check_latest(curs)
        leaves = merkle.tree_size(curs)
        curs.execute("SELECT count(*) AS events, max(position) AS head FROM events")
        log = curs.fetchone()
    return {"check": check, "leaves": leaves, "log": log}


@router.get("/verification")
@_html_errors
def verification(request: Request, session: Auditor) -> Response:
    return _page(request, "verification.html", session, verified=None, **_log_state(_department(request)))


@router.post("/verification")
@_html_errors
async def full_verification(request: Request, session: Auditor) -> Response:
    form = await forms.read(request)
    if not sessions.from_same_origin(request) or not sessions.same(form.get("csrf_token"), session.csrf_token):
        return _refused(request, session)

    def check() -> tuple[dict[str, Any], dict[str, Any]]:
        app = _department(request)
        # One at a time for the whole service (full_check.py): an auditor's second tab, a
        # colleague on another node or a script on the API waits for the first.
        verified = full_check.verify_alone(app.event_recorder.datastore)
        return verified, _log_state(app)

    try:
        verified, state = await run_in_threadpool(check)
    except full_check.VerificationRunning as running:
        wait = running.wait_s
        return _page(request, "error.html", session, 503, headers=running.headers,
                     title="全面验证正在进行 A full check is already running",
                     detail=f"A full verification is already running on this service (one at a time, for every"
                            f" auditor); try again in about {wait} s. 全面验证正在进行中(同一时间只运行一次),"
                            f"请约 {wait} 秒后再试。")
    return _page(request, "verification.html", session, verified=verified, **state)


def install(app: FastAPI) -> None:
    # Read here, so a malformed origin stops the app from being made (ValueError).
    app.state.audit_public_origin = sessions.public_origin()
    app.include_router(router)
    app.mount("/audit/static", StaticFiles(directory=HERE / "static"), name="audit-static")

    @app.exception_handler(_SignInRequired)
    async def sign_in_first(request: Request, missing: _SignInRequired) -> Response:
        return RedirectResponse(f"/audit/sign-in?next={quote(missing.target, safe='')}", status_code=303,
                                headers=SECURITY_HEADERS)

    @app.exception_handler(forms.BadForm)
    async def bad_form(request: Request, refused: forms.BadForm) -> Response:
        return _page(request, "error.html", None, refused.status, title=refused.title, detail=refused.detail)
