"""Reading your writes on the read side: `min_position` / `wait_s`, `X-Projection-Position`."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import Depends, Query, Response

from api.deps import Runner
from api.errors import ApiProblem
from channel_domain.store.projecting import ProjectionRunner

MinPosition = Annotated[int | None, Query(ge=0, le=2**62, description="Wait until the read model has applied this global position")]
WaitSeconds = Annotated[float, Query(ge=0, le=10, description="How long to wait for min_position (default 2, at most 10)")]


def consistent_read(runner: ProjectionRunner, name: str, min_position: int | None, wait_s: float) -> int:
    """Waits (polling) until the projection reached `min_position`; 503 if it does not in time,
    422 if no event has that position yet: a client only learns positions from answers, so
    waiting for one past the head could never end, and a Retry-After would loop for ever."""
    deadline = time.monotonic() + wait_s
    position = runner.checkpoint(name)
    if min_position is not None and position < min_position and min_position > runner.head():
        raise ApiProblem(422, "validation_error", f"min_position: {min_position} is past the last recorded event")
    while min_position is not None and position < min_position:
        if time.monotonic() >= deadline:
            raise ApiProblem(503, "projection_lagging",
                             f"{name} has applied position {position}, not yet {min_position}",
                             {"Retry-After": "1", "X-Projection-Position": str(position)})
        time.sleep(0.02)
        position = runner.checkpoint(name)
    return position


def fresh(*names: str) -> Any:
    """A dependency for a read-model endpoint: waits for `min_position` in each of `names`
    and sets `X-Projection-Position` (the lowest of them)."""

    def wait(response: Response, runner: Runner, min_position: MinPosition = None, wait_s: WaitSeconds = 2) -> int:
        reached = [consistent_read(runner, name, min_position, wait_s) for name in names]
        response.headers["X-Projection-Position"] = str(min(reached))
        return min(reached)

    return Depends(wait)
