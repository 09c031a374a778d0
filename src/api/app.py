"""The ASGI application: the HTTP contract of ../shared/api.md over the channel department."""

from __future__ import annotations

import asyncio
import gc
import html
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from api import errors, logging_setup, openapi, tracing, workspace
from api.breaker import DatabaseBreaker
from api.middleware import BodyLimit, CorrelationId, DatabaseGate, RefuseNul, RequestLog
from api.routes import (
    activity,
    attainment,
    audit,
    commission_disputes,
    commission_periods,
    commissions,
    contract_requests,
    contracts,
    employees,
    event_schemas,
    events,
    partner_money,
    partner_records,
    partner_reports,
    partners,
    projection_status,
    record_lists,
    sales_import,
    sales_reports,
    statement_diffs,
    targets,
    trainings,
    webhooks,
)
from api.routes import checkpoints as checkpoints_routes
from channel_domain.application import ChannelDepartment
from channel_domain.store import checkpoints
from channel_domain.store.database import database_url
from channel_domain.store.projecting import ProjectionRunner, run_lanes
from integration.webhooks import WebhookWorker
from projections import all_projections

logger = logging.getLogger(__name__)


class Health(BaseModel):
    status: str
    database: str
    migrations: int | None = None


class Landing(BaseModel):
    service: str
    version: str
    summary: str
    links: dict[str, str]


LANDING_LINKS = {
    "docs": "/docs",
    "openapi": "/openapi.json",
    "health": "/health",
    "metrics": "/metrics",
}


def _prefers_html(accept: str) -> bool:
    """Whether an Accept header ranks HTML above JSON (JSON on a tie: tools ask with `*/*`)."""
    ranges = []
    for entry in accept.lower().split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        ranges.append((name, weight))

    def quality(media_type: str) -> float:
        # The most specific range that matches decides (RFC 9110 §12.5.1).
        for candidate in (media_type, media_type.split("/")[0] + "/*", "*/*"):
            weights = [weight for name, weight in ranges if name == candidate]
            if weights:
                return max(weights)
        return 0.0

    return quality("text/html") > quality("application/json")


def _landing_html(body: Landing) -> str:
    items = "".join(f'<li><a href="{html.escape(href)}">{html.escape(name)}</a> <code>{html.escape(href)}</code></li>'
                    for name, href in body.links.items())
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(body.service)}</title>"
            f"</head><body><h1>{html.escape(body.service)} <small>{html.escape(body.version)}</small></h1>"
            f"<p>{html.escape(body.summary)}</p><ul>{items}</ul></body></html>")


def _operation_id(route: APIRoute) -> str:
    # Stable operation ids keep generated clients stable.
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def _project_when_ready(app: FastAPI, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with app.state.department_lock:
                if app.state.department is None:
                    app.state.department = ChannelDepartment(app.state.database_url)
                if app.state.runner is None:
                    app.state.runner = ProjectionRunner(app.state.department, all_projections())
            run_lanes(app.state.department, app.state.runner.projections, stop)
        except Exception:  # the database is away: try again shortly, never take the API down
            logger.exception("projections stopped; restarting")
            stop.wait(1)


def _deliver_webhooks_when_ready(app: FastAPI, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with app.state.department_lock:
                if app.state.department is None:
                    app.state.department = ChannelDepartment(app.state.database_url)
            worker = WebhookWorker(app.state.department)
            try:
                worker.run(stop)
            finally:
                worker.close()
        except Exception:  # the database is away: try again shortly, never take the API down
            logger.exception("webhook delivery stopped; restarting")
            stop.wait(1)


def _make_checkpoints_when_ready(app: FastAPI, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with app.state.department_lock:
                if app.state.department is None:
                    app.state.department = ChannelDepartment(app.state.database_url)
            checkpoints.run_maker(app.state.department.event_recorder.datastore, stop)
        except Exception:  # the database is away: try again shortly, never take the API down
            logger.exception("checkpoint making stopped; restarting")
            stop.wait(1)


def _replace_broken_connections(app: FastAPI) -> None:
    if app.state.department is not None:
        app.state.department.event_recorder.replace_broken_connections()


def create_app(url: str | None = None, *, run_projections: bool = False) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.database_url = url or database_url()
        app.state.department = None  # opened on first use, so /health answers even when the database is down
        app.state.runner = None
        app.state.department_lock = threading.Lock()
        app.state.breaker = DatabaseBreaker(app.state.database_url, on_return=lambda: _replace_broken_connections(app))
        # Everything made so far — modules, routes, models: some 120 000 objects — lives as
        # long as the process. Left to the cycle collector, each full collection walked them
        # all (70 ms on the benchmark machine, a stall for every request in flight); frozen,
        # it walks only what requests make.
        gc.collect()
        gc.freeze()
        stop = None
        if run_projections:
            # Every API process runs the projections; advisory locks let one work each at a time.
            stop = threading.Event()
            threading.Thread(target=_project_when_ready, args=(app, stop), name="projections", daemon=True).start()
            # Webhooks too (api.md, "Who delivers"): one worker per subscription at a time, by advisory lock.
            threading.Thread(target=_deliver_webhooks_when_ready, args=(app, stop), name="webhooks",
                             daemon=True).start()
            # And signed checkpoints (api.md, "Who delivers"): one maker at a time, by advisory lock.
            threading.Thread(target=_make_checkpoints_when_ready, args=(app, stop), name="checkpoints",
                             daemon=True).start()
        try:
            yield
        finally:
            if stop is not None:
                stop.set()
            if (feed_tail := getattr(app.state, "feed_tail", None)) is not None:
                await feed_tail.close()
            if (token_watch := getattr(app.state, "token_watch", None)) is not None:
                await token_watch.close()
            if (token_cache := getattr(app.state, "token_cache", None)) is not None:
                await asyncio.to_thread(token_cache.close)
            if app.state.department is not None:
                app.state.department.close()
            await app.state.breaker.probe.close()

    app = FastAPI(
        title="channel-domain",
        version="0.1.0",
        summary="Partners, contracts, sales targets, employees, commissions and audit of a sales-channel department.",
        description="Commands are POST; money is a decimal string; errors are RFC 9457 problem+json with a stable "
        "`code`. Send `Authorization: Bearer <token>` (issued by `channel-domain tokens create`), optionally "
        "`Idempotency-Key`, `If-Match` and `X-Correlation-Id`.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    errors.install(app)
    openapi.install(app)
    app.add_middleware(BodyLimit, streaming_paths=("/v1/sales/import",))
    app.add_middleware(DatabaseGate)
    app.add_middleware(RefuseNul)
    app.add_middleware(RequestLog)
    app.add_middleware(CorrelationId)
    # Routes are matched one after another, router by router (FastAPI looks into each included
    # router twice; a py-spy of 200 sales/s put 12 % of the server's CPU there): the busiest —
    # sales, statements, the feed — come first. A router whose paths overlap another's keeps its
    # place after it (contracts before contract_requests and record_lists, commissions before the
    # disputes and diffs under its paths).
    for module in (contracts, commissions, events, sales_import, employees, partners, partner_money, partner_records,
                   trainings, contract_requests, targets, activity, attainment, commission_periods,
                   commission_disputes, audit, checkpoints_routes, projection_status, event_schemas, webhooks,
                   record_lists, sales_reports, partner_reports, statement_diffs):
        app.include_router(module.router)
    app.include_router(commission_disputes.records)
    workspace.install(app)

    @app.get(
        "/health",
        response_model=Health,
        tags=["health"],
        responses={503: {"model": Health, "description": "The database does not answer."}},
    )
    async def health() -> JSONResponse:
        """Liveness, with the database checked: this process's latest look at it, at most half a
        second old, taken on a connection of the probe's own (`api/breaker.py`) — so a flood of
        health checks costs the database one connection and two queries a second per process.
        `status` is `busy` (still 200) when the database answers but has no room: a busy node
        is alive, and restarting it would not help."""
        look = await app.state.breaker.probe.look()
        if look.state in ("away", "error"):  # no answer, or no schema to answer from
            body = Health(status="unavailable", database=look.detail)
            return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})
        if look.state == "busy":
            return JSONResponse(Health(status="busy", database=look.detail).model_dump())
        return JSONResponse(Health(status="ok", database="ok", migrations=look.migrations).model_dump())

    @app.get(
        "/",
        response_model=Landing,
        tags=["meta"],
        summary="What this service is, and where to go from here",
        responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
    )
    async def landing(request: Request) -> Response:
        """A small HTML page for a browser; the same as JSON for `Accept: application/json`."""
        body = Landing(service=app.title, version=app.version, summary=app.summary or "", links=LANDING_LINKS)
        if _prefers_html(request.headers.get("accept", "")):
            return HTMLResponse(_landing_html(body))
        return JSONResponse(body.model_dump())

    return app


def app_from_environment() -> FastAPI:
    """Entry point for `uvicorn --factory api.app:app_from_environment`."""
    # Each uvicorn worker is a process of its own and runs this factory: configure it here.
    logging_setup.configure_from_environment()
    tracing.configure_from_environment()
    return create_app(
        os.environ.get("CHANNEL_DOMAIN_DATABASE_URL"),
        run_projections=os.environ.get("CHANNEL_DOMAIN_PROJECTIONS", "on") != "off",
    )
