"""The ASGI application: the HTTP contract of ../shared/api.md over the channel department."""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

from api import errors, logging_setup, openapi, tracing
from api.breaker import DatabaseBreaker
from api.middleware import BodyLimit, CorrelationId, DatabaseGate, RefuseNul, RequestLog
from api.routes import (
    activity,
    attainment,
    audit,
    commissions,
    contract_requests,
    contracts,
    employees,
    partner_money,
    partner_records,
    partners,
    projection_status,
    sales_import,
    targets,
    trainings,
)
from channel_domain.application import ChannelDepartment
from channel_domain.store.database import database_url
from channel_domain.store.projecting import ProjectionRunner
from projections import all_projections

logger = logging.getLogger(__name__)


class Health(BaseModel):
    status: str
    database: str
    migrations: int | None = None


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
            app.state.runner.run(stop)
        except Exception:  # the database is away: try again shortly, never take the API down
            logger.exception("projections stopped; restarting")
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
        try:
            yield
        finally:
            if stop is not None:
                stop.set()
            if app.state.department is not None:
                app.state.department.close()

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
    for module in (employees, partners, partner_money, partner_records, trainings, contracts, contract_requests,
                   sales_import, targets, activity, attainment, commissions, audit, projection_status):
        app.include_router(module.router)

    @app.get(
        "/health",
        response_model=Health,
        tags=["health"],
        responses={503: {"model": Health, "description": "The database does not answer."}},
    )
    async def health() -> JSONResponse:
        """Liveness, with a round trip to the database."""
        try:
            async with await psycopg.AsyncConnection.connect(app.state.database_url, connect_timeout=3) as conn:
                cursor = await conn.execute("SELECT count(*) FROM _yoyo_migration")
                row = await cursor.fetchone()
            body = Health(status="ok", database="ok", migrations=row[0] if row else 0)
            return JSONResponse(body.model_dump())
        except psycopg.Error as error:
            body = Health(status="unavailable", database=type(error).__name__)
            return JSONResponse(body.model_dump(), status_code=503)

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
