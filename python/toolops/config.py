"""The configuration file, read by the C++ core (one parser, one set of
rules for C++ and Python).

    import toolops
    toolops.configure("toolops.toml")   # or $TOOLOPS_CONFIG, or ./toolops.toml

``[stores.NAME]`` tables become stores of ``cache_manager`` under their
names; ``[tools.NAME]`` tables give the policy fields of the tool wrapped
under that name (``name=`` of the decorator, else ``module.function``),
over the decorator's arguments; ``TOOLOPS__...`` environment variables
override single fields of the file. The first decorator applies the
default file (``$TOOLOPS_CONFIG``, else ``./toolops.toml`` when present)
unless ``configure`` was called before. A wrong file raises ``PolicyError``
naming the file, the line, the field and what was expected.

``[telemetry]`` is applied too, field by field (fields the file does not
set leave the telemetry as it is): ``metrics_port`` / ``metrics_host``
start the Prometheus endpoint (``applied_metrics_port()`` says which
port), ``log_format`` / ``log_level`` shape the core's log lines,
``otlp_endpoint``, ``sampling_ratio``, ``record_arguments`` and
``service_name`` configure tracing, and ``stats_store`` / ``stats_interval``
publish this process's counters to a shared store for ``toolops stats
--store``. The standard variables win over the file: ``OTEL_*`` for
tracing, ``TOOLOPS_LOG_FORMAT`` / ``TOOLOPS_LOG_LEVEL``,
``TOOLOPS_TRACE_ARGUMENTS``, and ``TOOLOPS__TELEMETRY__<FIELD>`` for any
field. A port that cannot be bound raises ``PolicyError`` saying so.
"""

from __future__ import annotations

import os
import threading

from . import _core
from .cache import ConfiguredStore
from .errors import PolicyError
from .manager import cache_manager

_lock = threading.Lock()
_configured = False


def configure(path: str | os.PathLike | None = None) -> str:
    """Reads, checks and applies the configuration file; returns its path
    ("" when there was none). Tools wrapped before keep their policy."""
    global _configured
    with _lock:
        try:
            used, stores, telemetry_error = _core.configure(
                os.fspath(path) if path is not None else "")
        except ValueError as e:
            raise PolicyError(str(e)) from None
        for name, type_name, shared in stores:
            cache_manager.register(name, ConfiguredStore(type_name, shared))
        _configured = True
        if telemetry_error:
            raise PolicyError(telemetry_error)
        return used


def applied_metrics_port() -> int:
    """The port of the metrics endpoint the configuration started (0: none)."""
    return _core.applied_metrics_port()


def _ensure_configured() -> None:
    if not _configured:
        configure()
