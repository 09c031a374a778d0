"""The OpenAPI document as clients see the service: refusals are problem+json, and any
operation that reaches the database may answer 503 while it is away."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

PROBLEM = {"$ref": "#/components/schemas/Problem"}
UNAVAILABLE = {
    "description": "The database is not answering (`database_unavailable`), the service is busy (`service_busy`), or a"
                   " read model lags behind `min_position`; retry after `Retry-After`",
    "headers": {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}},
    "content": {"application/problem+json": {"schema": PROBLEM}},
}


def _as_problems(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    for status, response in responses.items():
        if status[0] in "45" and "application/json" in response.get("content", {}):
            # FastAPI's own 422 names its HTTPValidationError; errors.py answers every refusal,
            # that one included, as a Problem.
            response["content"] = {"application/problem+json": {"schema": PROBLEM}}
    responses.setdefault("503", UNAVAILABLE)


def install(app: FastAPI) -> None:
    generate = app.openapi  # FastAPI's own, which caches what it makes in app.openapi_schema

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path, operations in schema["paths"].items():
                if path.startswith("/v1/"):
                    for operation in operations.values():
                        _as_problems(operation)
            components = schema.get("components", {}).get("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                components.pop(unused, None)
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
