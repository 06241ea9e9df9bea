"""Exceptions raised by wrapped tools.

A call that fails raises the tool's own exception when the tool raised one
(also to every caller that shared the call). When ToolOps itself ended the
call, it raises a ``ToolOpsError`` whose class says which guard acted:

    ToolOpsError
    ├── PolicyError          (also ValueError)  a bad decorator argument, at decoration
    ├── CircuitOpenError                        the tool's circuit breaker is open
    ├── ConcurrencyLimitError                   the tool's concurrency limit is full
    ├── RetryBudgetExhausted                    a retry was needed; the retry budget is spent
    ├── ToolTimeout          (also TimeoutError) an attempt or the deadline ran out
    ├── UpstreamError                           the tool failed and no exception object is
    │                                           at hand (another process's leader failed)
    ├── StoreError                              a store could not be opened or used
    └── CodecError                              a value could not be encoded or decoded

Every ToolOpsError carries ``code`` (the status code name, such as
"UNAVAILABLE"), ``guard`` (which part acted, such as "breaker") and
``retry_after`` (seconds, 0 when there is no hint).
"""

from __future__ import annotations


class ToolOpsError(Exception):
    """Base class of the errors ToolOps raises for a call it ended."""

    def __init__(self, message: str, *, code: str = "UNKNOWN", guard: str = "none",
                 retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.code = code
        self.guard = guard
        self.retry_after = retry_after


class PolicyError(ToolOpsError, ValueError):
    """A decorator argument or policy is invalid (raised when the tool is wrapped)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="INVALID_ARGUMENT", guard="policy")


class CircuitOpenError(ToolOpsError):
    """The tool's circuit breaker is open: the call failed fast."""


class ConcurrencyLimitError(ToolOpsError):
    """The tool's concurrency limit was full for longer than the call may wait."""


class RetryBudgetExhausted(ToolOpsError):
    """The call needed a retry, but the tool's retry budget is spent."""


class ToolTimeout(ToolOpsError, TimeoutError):
    """An attempt exceeded its timeout, or the call's deadline passed."""


class UpstreamError(ToolOpsError):
    """The tool failed, and its exception object is not available here."""


class StoreError(ToolOpsError):
    """A cache store could not be opened or used."""


class CodecError(ToolOpsError):
    """A value could not be encoded or decoded."""


class RetryableError(Exception):
    """Raise (or subclass) this in a tool to say that trying again may help.

    ``retry_after`` (seconds) asks ToolOps to wait at least that long before
    the next attempt.
    """

    def __init__(self, message: str = "", *, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


_BY_GUARD = {
    "breaker": CircuitOpenError,
    "limiter": ConcurrencyLimitError,
    "retry_budget": RetryBudgetExhausted,
    "attempt_timeout": ToolTimeout,
    "deadline": ToolTimeout,
    "store": StoreError,
    "codec": CodecError,
    "policy": ToolOpsError,
}


def error_for(code: str, guard: str, message: str, retry_after: float) -> ToolOpsError:
    """The exception for a status the core returned (used by the binding)."""
    cls = _BY_GUARD.get(guard)
    if cls is None:
        cls = ToolTimeout if code == "DEADLINE_EXCEEDED" else UpstreamError
    return cls(message, code=code, guard=guard, retry_after=retry_after)
