"""Python types of custom pipelines <-> JSON: schemas for OpenAPI and checked conversion.

Supported: str, int, float, bool, None, Any, list[T], dict[str, T], T | None, Literal[...],
dataclasses and TypedDicts (nested). Anything else is refused when the pipeline loads.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from modelyard.errors import InvalidInput

_SCALARS: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def _fields(tp: Any) -> tuple[dict[str, Any], set[str]]:
    hints = get_type_hints(tp)
    if dataclasses.is_dataclass(tp):
        required = {
            f.name
            for f in dataclasses.fields(tp)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        return {f.name: hints[f.name] for f in dataclasses.fields(tp)}, required
    return hints, set(tp.__required_keys__)


def json_schema(tp: Any, components: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of `tp`; named types go into `components` and are referenced."""
    if tp is Any:
        return {}
    if tp is type(None) or tp is None:
        return {"type": "null"}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        return {"anyOf": [json_schema(a, components) for a in args]}
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        item = args[0] if args else Any
        return {"type": "array", "items": json_schema(item, components)}
    if origin is dict or tp is dict:
        value = args[1] if len(args) == 2 else Any
        return {"type": "object", "additionalProperties": json_schema(value, components)}
    if dataclasses.is_dataclass(tp) or _is_typeddict(tp):
        name = tp.__name__
        if name not in components:
            components[name] = {}  # placeholder against recursion
            props, required = _fields(tp)
            schema: dict[str, Any] = {
                "type": "object",
                "properties": {k: json_schema(v, components) for k, v in props.items()},
                "additionalProperties": False,
            }
            if required:
                schema["required"] = sorted(required)
            components[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}
    raise TypeError(f"type {tp!r} cannot be described in JSON")


def from_json(tp: Any, value: Any, where: str = "body") -> Any:
    """Convert parsed JSON to `tp`, checking types; raise InvalidInput (422) naming the field."""
    if tp is Any:
        return value
    if tp is type(None) or tp is None:
        if value is not None:
            raise InvalidInput(f"{where} must be null")
        return None
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise InvalidInput(f"{where} must be a number")
    if tp in _SCALARS:
        if isinstance(value, tp) and (tp is bool or not isinstance(value, bool)):
            return value
        raise InvalidInput(f"{where} must be of type {_SCALARS[tp]}")
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Literal:
        if value in args:
            return value
        raise InvalidInput(f"{where} must be one of {list(args)}")
    if origin in (Union, types.UnionType):
        for option in args:
            try:
                return from_json(option, value, where)
            except InvalidInput:
                continue
        raise InvalidInput(f"{where} has none of the accepted types")
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, list):
            raise InvalidInput(f"{where} must be an array")
        item = args[0] if args else Any
        out = [from_json(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise InvalidInput(f"{where} must be an object")
        vt = args[1] if len(args) == 2 else Any
        return {k: from_json(vt, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp) or _is_typeddict(tp):
        if not isinstance(value, dict):
            raise InvalidInput(f"{where} must be an object")
        props, required = _fields(tp)
        unknown = sorted(set(value) - set(props))
        if unknown:
            raise InvalidInput(f"{where}: unknown fields {', '.join(unknown)}")
        missing = sorted(required - set(value))
        if missing:
            raise InvalidInput(f"{where}: missing fields {', '.join(missing)}")
        kwargs = {k: from_json(props[k], v, f"{where}.{k}") for k, v in value.items()}
        return tp(**kwargs)
    raise InvalidInput(f"{where}: unsupported type")


def to_json(value: Any) -> Any:
    """Plain JSON values from dataclasses, tuples and numpy scalars/arrays."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
