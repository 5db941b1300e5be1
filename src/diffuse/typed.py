"""Dataclasses from JSON that a user may have edited: every field's type is checked against its annotation, so
a wrong type, an unknown key or a non-finite number is one line naming the field, never a crash far away."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from .errors import UserError


def _ok(value: Any, tp: Any) -> bool:
    """Whether a JSON value fits the annotation ``tp`` (int fits float; bool fits neither int nor float)."""
    if tp is Any:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_ok(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_ok(v, a) for v, a in zip(value, args))
        return all(_ok(v, args[0]) for v in value) if args else True
    if origin is dict or tp is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, (dict, tp))
    return True  # an annotation this checker does not model: left to the constructor


def from_json(cls: type, data: Any, where: str, **fixed: Any) -> Any:
    """``cls(**data, **fixed)`` after checking that ``data`` is an object whose keys are fields of ``cls`` with
    values of the annotated types; ``fixed`` are values the caller already built (nested dataclasses)."""
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"{where} has keys this version does not know: {', '.join(map(repr, unknown[:5]))}")
    for k, v in data.items():
        if k not in fixed and not _ok(v, hints.get(k, Any)):
            raise UserError(f"{where}: {k} = {v!r:.60} is not a valid {_name(hints.get(k))}")
    try:
        return cls(**{**data, **fixed})
    except (TypeError, ValueError) as e:  # a required field missing, or the class's own check
        raise UserError(f"{where} is not one this version understands ({e})") from None


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
