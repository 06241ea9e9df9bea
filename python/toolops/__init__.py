"""ToolOps: tool-call middleware for AI agents, on a C++ core.

    from toolops import readonly

    @readonly(cache_backend="semantic", cache_ttl=3600, retry_count=3)
    async def run_tool(query: str) -> str:
        return await paid_tool.call(query)

See ``toolops.decorators`` for the decorators, ``toolops.cache`` for the
stores, ``toolops.errors`` for the exceptions and ``toolops.codec`` for how
results are stored.
"""

from __future__ import annotations

import atexit
import os

_here = os.path.dirname(os.path.abspath(__file__))
_bundled_model = os.path.join(_here, "models", "minilm-static")
if not os.environ.get("TOOLOPS_MODEL_DIR") and os.path.isdir(_bundled_model):
    # The model installed with the package (the core reads it on first use).
    os.environ["TOOLOPS_MODEL_DIR"] = _bundled_model

from . import _core  # noqa: E402
from .cache import (  # noqa: E402
    FileCache,
    MemoryCache,
    PostgresCache,
    RedisCache,
    SemanticCache,
    SQLiteCache,
    ValkeyCache,
)
from .codec import DataclassCodec, JsonCodec, PydanticCodec  # noqa: E402
from .config import configure  # noqa: E402
from .decorators import readonly, sideeffect, tool  # noqa: E402
from .errors import (  # noqa: E402
    CircuitOpenError,
    CodecError,
    ConcurrencyLimitError,
    PolicyError,
    RetryableError,
    RetryBudgetExhausted,
    StoreError,
    ToolOpsError,
    ToolTimeout,
    UpstreamError,
)
from .manager import cache_manager  # noqa: E402
from .telemetry import (  # noqa: E402
    configure_logging,
    configure_tracing,
    flush_tracing,
    metrics,
    prometheus_text,
    serve_metrics,
    tool_call_id,
    tracing_stats,
)

__version__ = "0.1.0"

# The coroutine runner's thread stops before the interpreter goes away.
atexit.register(_core.shutdown)

__all__ = [
    "readonly", "sideeffect", "tool", "cache_manager", "configure",
    "MemoryCache", "SQLiteCache", "FileCache", "RedisCache", "ValkeyCache", "PostgresCache",
    "SemanticCache", "JsonCodec", "PydanticCodec", "DataclassCodec",
    "ToolOpsError", "PolicyError", "CircuitOpenError", "ConcurrencyLimitError",
    "RetryBudgetExhausted", "ToolTimeout", "UpstreamError", "StoreError", "CodecError",
    "RetryableError", "metrics", "prometheus_text", "serve_metrics", "configure_tracing",
    "flush_tracing", "tracing_stats", "configure_logging", "tool_call_id", "__version__",
]
