"""/v1/projections and /metrics: how far each read model has got, and whether it is stopped."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from psycopg_pool import PoolTimeout
from pydantic import BaseModel

from api.deps import Runner, allowed
from api.errors import ApiProblem
from api.openapi import PROBLEM
from api.routes.events import add_feed_metrics
from api.routes.records import ERRORS
from api.tokens import ROLES, Principal
from channel_domain.application import ChannelDepartment
from channel_domain.store.group_commit import PATIENCE_S, GroupStats
from channel_domain.store.projecting import Progress, ProjectionRunner
from integration.webhook_subscriptions import DeliveryFigures, delivery_figures

router = APIRouter(tags=["projections"])
Anyone = Annotated[Principal, Depends(allowed(*ROLES))]

METRICS_INTERVAL_VARIABLE = "CHANNEL_DOMAIN_METRICS_INTERVAL_S"
METRICS_WAIT_VARIABLE = "CHANNEL_DOMAIN_METRICS_WAIT_S"


class ProjectionState(BaseModel):
    name: str
    position: int
    head: int
    lag: int
    status: Literal["running", "failing"]
    failing_position: int | None = None  # the event it stopped at; `position` is just before it
    # Only the exception's type: a database error's message quotes the row it refused (event data,
    # personal data), and every role reads this. The whole text and traceback are for operators:
    # `channel-domain projections status --traceback`.
    error: str | None = None
    since: datetime | None = None


class ProjectionStates(BaseModel):
    items: list[ProjectionState]
    next_cursor: str | None = None  # every projection fits on one page


def state_of(progress: Progress) -> dict[str, Any]:
    failure = progress.failure
    return {"name": progress.name, "position": progress.position, "head": progress.head, "lag": progress.lag,
            "status": progress.status, "failing_position": failure.position if failure else None,
            "error": failure.error.split(":", 1)[0] if failure else None,
            "since": failure.since if failure else None}


@router.get("/v1/projections", response_model=ProjectionStates, responses=ERRORS,
            summary="Each read model's position, the log's head, the lag between them, and whether it is failing")
def projections(runner: Runner, _: Anyone) -> dict[str, Any]:
    return {"items": [state_of(p) for p in runner.progress()], "next_cursor": None}


class MetricsCache:
    """The figures /metrics serves, collected at most once per `interval_s` in a process, by
    one request at a time: a scrape storm (several Prometheus servers, a dashboard refreshing)
    costs the database one query per interval. The query waits at most `wait_s` for a pooled
    connection — requests need them more — and, when it gets none or the database fails, the
    last figures are served with their age (`channel_domain_metrics_age_seconds`)."""

    def __init__(self, interval_s: float, wait_s: float) -> None:
        self.interval_s = interval_s
        self.wait_s = wait_s
        self.collections = 0
        self.failures = 0
        self._figures: list[Progress] | None = None
        self.webhooks: DeliveryFigures | None = None  # collected with them, on the same connection
        self._taken_at = 0.0
        self._collecting = threading.Lock()

    def _fresh(self) -> bool:
        return self._figures is not None and time.monotonic() - self._taken_at < self.interval_s

    def figures(self, runner: ProjectionRunner) -> tuple[list[Progress], float]:
        """The figures and their age in seconds."""
        if not self._fresh() and self._collecting.acquire(timeout=max(self.wait_s, 0.001) * 4):
            try:
                if not self._fresh():  # another request may have collected while this one waited
                    self._collect(runner)
            finally:
                self._collecting.release()
        if self._figures is None:
            raise ApiProblem(503, "metrics_unavailable", "no figures collected yet: the database did not answer",
                             {"Retry-After": "1"})
        return self._figures, time.monotonic() - self._taken_at

    def _collect(self, runner: ProjectionRunner) -> None:
        try:
            with runner.datastore.pool.connection(timeout=self.wait_s) as conn:
                figures = runner.progress(conn)
                webhooks = delivery_figures(conn)
        except (PoolTimeout, psycopg.Error):
            self.failures += 1
            return
        self._figures, self.webhooks, self._taken_at = figures, webhooks, time.monotonic()
        self.collections += 1


_cache_guard = threading.Lock()


def metrics_cache(request: Request) -> MetricsCache:
    state = request.app.state
    cache = getattr(state, "metrics_cache", None)
    if cache is None:
        with _cache_guard:
            cache = getattr(state, "metrics_cache", None)
            if cache is None:
                cache = state.metrics_cache = MetricsCache(
                    float(os.environ.get(METRICS_INTERVAL_VARIABLE, "5")),
                    float(os.environ.get(METRICS_WAIT_VARIABLE, "0.5")))
    return cache


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}},
                       503: {"description": "No figures collected yet and the database does not answer"
                                            " (`metrics_unavailable`); retry after `Retry-After`",
                             "headers": {"Retry-After": {"description": "Seconds to wait before retrying",
                                                         "schema": {"type": "string"}}},
                             "content": {"application/problem+json": {"schema": PROBLEM}}}})
def metrics(request: Request, runner: Runner, cache: Annotated[MetricsCache, Depends(metrics_cache)]) -> Response:
    figures, age = cache.figures(runner)
    registry = CollectorRegistry()
    labels = ["projection"]
    position = Gauge("channel_domain_projection_position", "Last global position applied", labels, registry=registry)
    head = Gauge("channel_domain_projection_head", "Highest global position in the log", labels, registry=registry)
    lag = Gauge("channel_domain_projection_lag", "Events not yet applied", labels, registry=registry)
    failing = Gauge("channel_domain_projection_failing", "1 when the read model is stopped at an event it cannot"
                    " apply (see GET /v1/projections, `channel-domain projections status`)", labels, registry=registry)
    failing_position = Gauge("channel_domain_projection_failing_position",
                             "The event a failing read model stopped at (0 when running)", labels, registry=registry)
    failing_since = Gauge("channel_domain_projection_failing_since_timestamp_seconds",
                          "When the read model stopped (0 when running)", labels, registry=registry)
    for progress in figures:
        position.labels(progress.name).set(progress.position)
        head.labels(progress.name).set(progress.head)
        lag.labels(progress.name).set(progress.lag)
        failure = progress.failure
        failing.labels(progress.name).set(0 if failure is None else 1)
        failing_position.labels(progress.name).set(0 if failure is None else failure.position)
        failing_since.labels(progress.name).set(0 if failure is None else failure.since.timestamp())
    Gauge("channel_domain_metrics_age_seconds", "Age of the figures above: collected at most once per"
          f" {METRICS_INTERVAL_VARIABLE} (default 5 s); older when the database did not answer",
          registry=registry).set(age)
    Counter("channel_domain_metrics_collections", "Times this process read the figures from the database",
            registry=registry).inc(cache.collections)
    Counter("channel_domain_metrics_collection_failures", "Times this process could not read them (served the"
            " last figures instead)", registry=registry).inc(cache.failures)
    add_feed_metrics(request.app.state, registry)
    _add_webhook_metrics(cache.webhooks, registry)
    _add_group_commit_metrics(getattr(request.app.state, "department", None), registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _add_group_commit_metrics(department: ChannelDepartment | None, registry: CollectorRegistry) -> None:
    """This process's group commit (README, "Group commit"): commands a group is commands / groups."""
    queue = department.event_recorder.group_commit if department is not None else None
    stats = queue.stats if queue is not None else GroupStats()
    Counter("channel_domain_append_groups", "Groups of appends this process wrote, each in one transaction"
            " (a lone append is a group of one)", registry=registry).inc(stats.groups)
    Counter("channel_domain_append_group_commands", "Commands whose appends those groups carried",
            registry=registry).inc(stats.commands)
    Counter("channel_domain_append_groups_impatient", "Groups begun beside others that were taking longer"
            f" than the patience ({PATIENCE_S * 1000:g} ms)", registry=registry).inc(stats.impatient)
    Counter("channel_domain_append_groups_refused", "Groups the database refused for one of their commands,"
            " written again one command at a time", registry=registry).inc(stats.refused)


def _add_webhook_metrics(figures: DeliveryFigures | None, registry: CollectorRegistry) -> None:
    """Totals over every subscription (a label per subscription would let clients grow the scrape
    without bound: `GET /v1/webhooks/{id}` has each one's figures)."""
    if figures is None:
        return
    subscriptions = Gauge("channel_domain_webhook_subscriptions", "Webhook subscriptions by status", ["status"],
                          registry=registry)
    subscriptions.labels("active").set(figures.active)
    subscriptions.labels("paused").set(figures.paused)
    Gauge("channel_domain_webhook_waiting_events", "Webhook events not yet delivered and not parked (being sent or"
          " waiting for a retry), every subscription", registry=registry).set(figures.waiting_events)
    Gauge("channel_domain_webhook_parked_events", "Webhook events parked after 8 failed attempts, every subscription"
          " (POST /v1/webhooks/{id}/parked/replay)", registry=registry).set(figures.parked_events)
    Gauge("channel_domain_webhook_max_lag", "Events the furthest-behind active subscription has not delivered"
          " (its lag as GET /v1/webhooks/{id} answers it)", registry=registry).set(figures.max_lag)
