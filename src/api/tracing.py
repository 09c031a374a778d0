"""Optional OpenTelemetry tracing, configured by OpenTelemetry's own environment variables.

Off unless OTEL_TRACES_EXPORTER (`otlp`, `console`) or an OTLP endpoint is set, and not
OTEL_SDK_DISABLED=true. The SDK and the exporter come with `pip install channel-domain[otel]`
and are imported only here, only then: the base install never loads them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from channel_domain import observability

logger = logging.getLogger(__name__)
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def wanted(environ: dict[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return any(environ.get(name) for name in _ENDPOINTS)


def configure_from_environment(environ: dict[str, str] | None = None) -> bool:
    """Install a tracer exporting as the environment says; False when tracing stays off."""
    environ = os.environ if environ is None else environ
    if not wanted(environ):
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        logger.warning("tracing is configured (OTEL_*) but OpenTelemetry is not installed: "
                       "pip install 'channel-domain[otel]'; going on without tracing")
        return False
    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or "channel-domain"})
    provider = TracerProvider(resource=resource)
    names = [name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if name.strip()]
    for name in names:
        exporter: Any
        if name == "console":
            exporter = ConsoleSpanExporter()
        elif name == "otlp":
            exporter = _otlp_exporter(environ)
            if exporter is None:
                continue
        else:
            logger.warning("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console); ignored", name)
            continue
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # shared with any instrumentation the operator adds
    install(provider)
    logger.info("tracing on: exporting spans to %s", ", ".join(names))
    return True


def install(provider: Any) -> None:
    """Trace requests, commands and appends with `provider` (a TracerProvider); tests use
    this with an in-memory exporter."""
    observability.install_tracer(provider.get_tracer("channel-domain"))


def _otlp_exporter(environ: dict[str, str]) -> Any:
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        logger.warning("no OTLP exporter for protocol %r installed (pip install 'channel-domain[otel]' gives "
                       "http/protobuf); spans are not exported", protocol or "http/protobuf")
        return None
    return OTLPSpanExporter()  # endpoint, headers, timeout: read from OTEL_EXPORTER_OTLP_* by the exporter
