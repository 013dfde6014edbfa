"""Strict dict round trips for the frozen config dataclasses of `qs4d.runtime.spec`."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .errors import Qs4dError


class SpecError(Qs4dError, ValueError):
    """A spec, config or bundle field is wrong; the message names the field."""


def _check_keys(cls: type, d: Any, where: str) -> None:
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected an object, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = sorted(required - set(d))
    if missing:
        raise SpecError(f"{where}: missing key(s) {missing}")


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Check a JSON value against the field's default type; JSON lists become tuples."""
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where}: expected a list, got {value!r}")
        return tuple(value)
    if isinstance(value, (list, tuple, dict)) and not isinstance(default, dict):
        raise SpecError(f"{where}: expected a single value, got {value!r}")
    if isinstance(default, bool) and not isinstance(value, bool):
        raise SpecError(f"{where}: expected true/false, got {value!r}")
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where}: expected an integer, got {value!r}")
    if isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise SpecError(f"{where}: expected a number, got {value!r}")
    if isinstance(default, str) and not isinstance(value, str):
        raise SpecError(f"{where}: expected a string, got {value!r}")
    return value


class _Config:
    """Mixin: dict round trip with strict key checking."""

    @classmethod
    def from_dict(cls, d: dict, where: str | None = None):
        where = where or cls.__name__
        _check_keys(cls, d, where)
        kw = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            default = None if f.default is dataclasses.MISSING else f.default
            kw[f.name] = _coerce(d[f.name], default, f"{where}.{f.name}")
        try:
            return cls(**kw)
        except SpecError as e:
            if str(e).startswith(where):
                raise
            raise SpecError(f"{where}: {e}") from None
        except (TypeError, ValueError) as e:
            raise SpecError(f"{where}: {e}") from e

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)
