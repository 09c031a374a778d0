"""/v1/projections and /metrics: how far each read model has got."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from api.deps import Runner, allowed
from api.routes.records import ERRORS
from api.tokens import ROLES, Principal

router = APIRouter(tags=["projections"])
Anyone = Annotated[Principal, Depends(allowed(*ROLES))]


class ProjectionState(BaseModel):
    name: str
    position: int
    head: int
    lag: int


class ProjectionStates(BaseModel):
    items: list[ProjectionState]
    next_cursor: str | None = None  # every projection fits on one page


@router.get("/v1/projections", response_model=ProjectionStates, responses=ERRORS,
            summary="Each read model's position, the log's head and the lag between them")
def projections(runner: Runner, _: Anyone) -> dict[str, Any]:
    return {"items": [{"name": p.name, "position": p.position, "head": p.head, "lag": p.lag}
                      for p in runner.progress()], "next_cursor": None}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(runner: Runner) -> Response:
    registry = CollectorRegistry()
    labels = ["projection"]
    position = Gauge("channel_domain_projection_position", "Last global position applied", labels, registry=registry)
    head = Gauge("channel_domain_projection_head", "Highest global position in the log", labels, registry=registry)
    lag = Gauge("channel_domain_projection_lag", "Events not yet applied", labels, registry=registry)
    for progress in runner.progress():
        position.labels(progress.name).set(progress.position)
        head.labels(progress.name).set(progress.head)
        lag.labels(progress.name).set(progress.lag)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
