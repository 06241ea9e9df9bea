"""How results become stored data and arguments become key data.

Results are stored as data, never as pickles. The binding stores ``str`` and
``bytes`` itself; everything else goes through a codec:

- ``JsonCodec`` (the default): JSON-compatible values (None, bool, int,
  float, str, lists, tuples as lists, dicts with str keys). A result that is
  not JSON-compatible is returned to the caller, not cached, and reported
  once per tool with a warning.
- ``PydanticCodec(Model)``: a pydantic model, stored as its JSON.
- ``DataclassCodec(cls)``: a dataclass of JSON-compatible fields.

A codec is any object with ``encode(value) -> bytes | None`` (None: not
encodable) and ``decode(data: bytes) -> value``. Stored bytes start with a
tag byte so that a value written by one codec is never read by another.

Arguments are keyed by their canonical form (see the C++ ArgWriter): plain
data is encoded directly; ``to_data`` turns other common types into data
first (dataclasses, pydantic models, enums, dates, sets, UUIDs, paths).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import pathlib
import uuid
import warnings
from typing import Any, Callable

_JSON_TAG = b"j"
_MODEL_TAG = b"m"


class JsonCodec:
    """JSON-compatible values."""

    tag = _JSON_TAG

    def encode(self, value: Any) -> bytes | None:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=True)
        except (TypeError, ValueError):
            return None
        return _JSON_TAG + text.encode("utf-8")

    def decode(self, data: bytes) -> Any:
        if data[:1] != _JSON_TAG:
            raise ValueError("the stored value was not written by JsonCodec")
        return json.loads(data[1:].decode("utf-8"))


class PydanticCodec:
    """Instances of one pydantic model class, stored as their JSON."""

    def __init__(self, model: type) -> None:
        if not hasattr(model, "model_validate_json"):
            raise TypeError(f"{model!r} is not a pydantic (v2) model class")
        self.model = model

    def encode(self, value: Any) -> bytes | None:
        if not isinstance(value, self.model):
            return None
        return _MODEL_TAG + value.model_dump_json().encode("utf-8")

    def decode(self, data: bytes) -> Any:
        if data[:1] != _MODEL_TAG:
            raise ValueError("the stored value was not written by PydanticCodec")
        return self.model.model_validate_json(data[1:])


class DataclassCodec:
    """Instances of one dataclass whose fields are JSON-compatible."""

    def __init__(self, cls: type) -> None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} is not a dataclass")
        self.cls = cls

    def encode(self, value: Any) -> bytes | None:
        if not isinstance(value, self.cls):
            return None
        try:
            text = json.dumps(dataclasses.asdict(value), ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError):
            return None
        return _MODEL_TAG + text.encode("utf-8")

    def decode(self, data: bytes) -> Any:
        if data[:1] != _MODEL_TAG:
            raise ValueError("the stored value was not written by DataclassCodec")
        return self.cls(**json.loads(data[1:].decode("utf-8")))


def result_hooks(codec: Any, tool_name: str, cached: bool = True) -> tuple[Callable, Callable]:
    """The encode and decode hooks the binding calls for one tool. Results
    of a tool that is never cached (a side effect) are not reported when the
    codec cannot encode them: they are handed to the caller as they are."""
    warned = not cached

    def encode(value: Any) -> bytes | None:
        nonlocal warned
        data = codec.encode(value)
        if data is None and not warned:
            warned = True
            warnings.warn(
                f"toolops: tool '{tool_name}' returned a {type(value).__name__}, which "
                f"{type(codec).__name__} cannot store as data; such results are returned but "
                "not cached (pass codec=PydanticCodec(Model), DataclassCodec(cls) or your own)",
                RuntimeWarning,
                stacklevel=2,
            )
        return data

    return encode, codec.decode


def to_data(value: Any) -> Any:
    """A plain-data form of an argument, for its key. Raises TypeError when
    the type has none (the call then goes upstream uncached)."""
    if isinstance(value, enum.Enum):
        return {"$enum": type(value).__qualname__, "value": value.value}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"$dataclass": type(value).__qualname__, "fields": dataclasses.asdict(value)}
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return {"$model": type(value).__qualname__, "fields": dump(mode="json")}
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return {"$" + type(value).__name__: value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {"$timedelta": value.total_seconds()}
    if isinstance(value, (set, frozenset)):
        items = list(value)
        try:
            items.sort()
        except TypeError:
            items.sort(key=repr)
        return {"$set": items}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, pathlib.PurePath):
        return {"$path": str(value)}
    raise TypeError(f"no canonical form for {type(value).__name__}")
