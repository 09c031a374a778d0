"""The ASGI application. For now: `GET /health`, reporting whether the database answers."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from channel_domain.store.database import database_url


class Health(BaseModel):
    status: str
    database: str
    migrations: int | None = None


def create_app(url: str | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.database_url = url or database_url()
        yield

    app = FastAPI(
        title="channel-domain",
        version="0.1.0",
        summary="Partners, contracts, sales targets, employees, commissions and audit of a sales-channel department.",
        lifespan=lifespan,
    )

    @app.get(
        "/health",
        response_model=Health,
        tags=["health"],
        responses={503: {"model": Health, "description": "The database does not answer."}},
    )
    async def health() -> JSONResponse:
        """Liveness, with a round trip to the database."""
        try:
            async with await psycopg.AsyncConnection.connect(
                app.state.database_url, connect_timeout=3
            ) as conn:
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
    return create_app(os.environ.get("CHANNEL_DOMAIN_DATABASE_URL"))
