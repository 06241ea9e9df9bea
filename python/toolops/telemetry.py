"""Telemetry of the wrapped tools: metrics, traces and structured logs.

    import toolops

    toolops.metrics()["search"]["money_saved"]        # in-process snapshot
    print(toolops.prometheus_text())                   # Prometheus text format
    server = toolops.serve_metrics(port=9464)          # GET /metrics (opt-in)
    toolops.configure_tracing("http://localhost:4318/v1/traces", ratio=0.01)
    toolops.configure_logging("json", level="info")

Tracing is also configured by the standard ``OTEL_*`` environment variables
(read when the first tool is wrapped; ``configure_tracing(from_env=True)``
reads them again), and logging by ``TOOLOPS_LOG_FORMAT`` and
``TOOLOPS_LOG_LEVEL``. Everything runs in the C++ core; these functions only
shape arguments and results.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping, Sequence

from . import _core

_SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on",
             "parentbased_always_off", "parentbased_traceidratio")


def metrics() -> dict[str, dict[str, Any]]:
    """The metrics of every live wrapped tool, by tool name.

    Each entry has ``counters`` (every outcome and event counter),
    ``upstream_calls``, ``calls_saved``, ``cost_per_call``, ``money_saved``,
    ``breaker_state`` ("closed", "open", "half-open"), ``breaker_transitions``
    and ``latency`` (``bounds`` in seconds, per-bucket ``counts`` with +Inf
    last, ``count``, ``sum``). Tools wrapped twice under one name are summed.
    """
    return {m.pop("tool"): m for m in _core.metrics()}


def prometheus_text() -> str:
    """The Prometheus text exposition (format 0.0.4) of every live tool."""
    return _core.prometheus_text()


def serve_metrics(port: int = 9464, host: str = "127.0.0.1") -> Any:
    """Starts an HTTP endpoint serving ``GET /metrics`` on its own thread.

    ``port=0`` picks a free port; the returned server's ``port`` says which.
    It serves until the object is garbage-collected: keep a reference.
    Raises ValueError when the host is not an IP address or the port cannot
    be bound.
    """
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port is {port!r}; it must be an integer in 0..65535 (0: a free port)")
    return _core.start_metrics_server(host, port)


def configure_tracing(endpoint: str | None = None, *, enabled: bool = True,
                      sampler: str | None = None, ratio: float | None = None,
                      service_name: str | None = None,
                      headers: Mapping[str, str] | None = None,
                      resource_attributes: Mapping[str, str] | None = None,
                      timeout: float | None = None, record_arguments: bool = False,
                      max_queue_spans: int | None = None, schedule_delay: float | None = None,
                      from_env: bool = False) -> None:
    """Configures the export of tool-call spans over OTLP/HTTP (JSON).

    ``endpoint`` is the full URL (``http://host:4318/v1/traces``). With only
    ``ratio``, the sampler is ``parentbased_traceidratio``. Arguments and
    results are recorded only with ``record_arguments=True``, and then with
    secret values masked. ``from_env=True`` reads the ``OTEL_*`` variables
    instead (the other arguments are then not allowed). ``enabled=False``
    stops tracing. Raises ValueError naming a bad option.
    """
    if from_env:
        _core.configure_tracing_from_env()
        return
    options: dict[str, Any] = {"enabled": bool(enabled)}
    if enabled and not endpoint:
        raise ValueError("configure_tracing needs the endpoint, e.g. "
                         "'http://localhost:4318/v1/traces', or from_env=True")
    if endpoint:
        options["endpoint"] = endpoint
    if sampler is None and ratio is not None:
        sampler = "parentbased_traceidratio"
    if sampler is not None:
        if sampler not in _SAMPLERS:
            raise ValueError(f"sampler is {sampler!r}; expected one of {', '.join(_SAMPLERS)}")
        options["sampler"] = sampler
    if ratio is not None:
        options["ratio"] = float(ratio)
    if service_name is not None:
        options["service_name"] = service_name
    if headers:
        options["headers"] = [(str(k), str(v)) for k, v in headers.items()]
    if resource_attributes:
        options["resource_attributes"] = [(str(k), str(v)) for k, v in resource_attributes.items()]
    if timeout is not None:
        options["timeout"] = float(timeout)
    if max_queue_spans is not None:
        options["max_queue_spans"] = int(max_queue_spans)
    if schedule_delay is not None:
        options["schedule_delay"] = float(schedule_delay)
    options["record_arguments"] = bool(record_arguments)
    _core.configure_tracing(options)


def flush_tracing(timeout: float = 5.0) -> bool:
    """Sends the queued spans now; True when all went out within ``timeout``."""
    return _core.flush_tracing(float(timeout))


def tracing_stats() -> dict[str, int]:
    """Spans recorded, exported, dropped (queue full) and failed exports."""
    return _core.tracing_stats()


def configure_logging(format: str = "json", level: str = "info") -> None:
    """Log lines of the core (and of ToolOps) as JSON lines or text on stderr.

    One line per notable event (a store down or back, a lost lease, failed
    span exports), never one per call. ``level`` is debug, info, warning or
    error.
    """
    _core.configure_logging(format, level)


@contextlib.contextmanager
def tool_call_id(call_id: str) -> Iterator[None]:
    """Gives the next blocking tool call made in this block the agent
    framework's tool-call id (``gen_ai.tool.call.id`` on its span).

        with toolops.tool_call_id(call.id):
            result = search(call.args["query"])
    """
    previous = _core.set_call_id(str(call_id))
    try:
        yield
    finally:
        _core.set_call_id(previous)


def looks_like_secret(name: str) -> bool:
    """True when a parameter name looks like a secret (api_key, token, ...:
    matched as words, so ``author`` and ``keyword`` do not)."""
    return _core.looks_like_secret_name(name)


__all__: Sequence[str] = ("metrics", "prometheus_text", "serve_metrics", "configure_tracing",
                          "flush_tracing", "tracing_stats", "configure_logging",
                          "tool_call_id", "looks_like_secret")
