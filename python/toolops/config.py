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
            used, stores = _core.configure(os.fspath(path) if path is not None else "")
        except ValueError as e:
            raise PolicyError(str(e)) from None
        for name, type_name, shared in stores:
            cache_manager.register(name, ConfiguredStore(type_name, shared))
        _configured = True
        return used


def _ensure_configured() -> None:
    if not _configured:
        configure()
