"""Custom pipelines: a user class named `package.module:Class` in the config.

Example::

    from dataclasses import dataclass
    from modelyard.serve.custom import on_startup, run_once

    @dataclass
    class Question:
        text: str
        top_k: int = 3

    @dataclass
    class Answer:
        labels: list[str]

    class Tagger:
        def __init__(self, model_dir, options):   # both optional, passed by name
            ...

        @on_startup
        def warm(self) -> None:                   # before the model is READY
            ...

        @run_once
        def compile(self) -> None:                # once per process, on first use
            ...

        def predict(self, q: Question) -> Answer:  # typed: becomes the OpenAPI schema
            ...

`predict_batch(self, items: list[In]) -> list[Out]` may replace `predict` to take whole batches.
Raise `modelyard.errors.InvalidInput` from predict for input the types cannot rule out (answered
422); any other exception is a 500 with its message.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_args, get_type_hints

from modelyard.errors import ModelRefError
from modelyard.serve.config import ModelConfig
from modelyard.serve.pipelines.base import Pipeline, Prepared
from modelyard.serve.typeschema import from_json, json_schema, to_json

F = TypeVar("F", bound=Callable[..., Any])

_STARTUP = "__modelyard_on_startup__"
_RUN_ONCE = "__modelyard_run_once__"


def on_startup(func: F) -> F:
    """Mark a method to run when the model loads, before it is READY."""
    setattr(func, _STARTUP, True)
    return func


def run_once(func: F) -> F:
    """Make a method run once per process, on first use.

    Concurrent first callers wait for the one running call; later calls return at once (with
    None). If the call raises, the next call tries again.
    """
    lock = threading.Lock()
    done = False

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal done
        if done:
            return None
        with lock:
            if done:
                return None
            result = func(*args, **kwargs)
            done = True
            return result

    setattr(wrapper, _RUN_ONCE, True)
    return wrapper  # type: ignore[return-value]


def import_class(spec: str) -> type:
    """`package.module:Class` -> the class. Raises ModelRefError."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ModelRefError(f"custom pipeline must be 'package.module:Class', not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelRefError(f"cannot import {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    if not isinstance(obj, type):
        raise ModelRefError(f"{spec!r} is not a class")
    return obj


def _marked(cls: type, mark: str) -> list[str]:
    return [
        name
        for name, member in inspect.getmembers(cls)
        if callable(member) and getattr(member, mark, False)
    ]


def signature_types(cls: type) -> tuple[Any, Any, bool]:
    """(input type, output type, batched) of a custom class's predict or predict_batch method."""
    batched = callable(getattr(cls, "predict_batch", None))
    method_name = "predict_batch" if batched else "predict"
    method = getattr(cls, method_name, None)
    if not callable(method):
        raise ModelRefError(f"{cls.__qualname__} has no predict method")
    try:
        hints = get_type_hints(method)
    except Exception as exc:  # bad forward references in user code
        raise ModelRefError(f"cannot read the types of {cls.__qualname__}: {exc}") from exc
    params = [p for p in inspect.signature(method).parameters if p != "self"]
    if len(params) != 1:
        raise ModelRefError(f"{cls.__qualname__}.{method_name} must take one argument")
    in_type = hints.get(params[0], Any)
    out_type = hints.get("return", Any)
    if batched:  # list[In] -> list[Out]
        in_type = (get_args(in_type) or (Any,))[0]
        out_type = (get_args(out_type) or (Any,))[0]
    return in_type, out_type, batched


class CustomPipeline(Pipeline):
    """Adapts a user class to the Pipeline contract."""

    task = "custom"

    def __init__(self, cls: type, model_dir: Path | None, config: ModelConfig) -> None:
        self.cls = cls
        self.in_type, self.out_type, self.batched = signature_types(cls)
        self.components: dict[str, Any] = {}
        try:
            self.input_schema = json_schema(self.in_type, self.components)
            self.output_schema = json_schema(self.out_type, self.components)
        except TypeError as exc:
            raise ModelRefError(f"{cls.__qualname__}: {exc}") from exc
        method_name = "predict_batch" if self.batched else "predict"
        wanted = inspect.signature(cls).parameters
        offered = {"model_dir": model_dir, "options": dict(config.options), "name": config.name}
        self.instance = cls(**{k: v for k, v in offered.items() if k in wanted})
        self._once = [getattr(self.instance, n) for n in _marked(cls, _RUN_ONCE)]
        self._startup = [getattr(self.instance, n) for n in _marked(cls, _STARTUP)]
        self._predict = getattr(self.instance, method_name)

    def startup(self) -> None:
        for method in self._startup:
            method()

    def prepare(self, payload: Any) -> Prepared:
        return Prepared(from_json(self.in_type, payload))

    def run(self, batch: list[Prepared]) -> list[Any]:
        for method in self._once:
            method()
        if self.batched:
            results = list(self._predict([p.value for p in batch]))
            if len(results) != len(batch):
                raise RuntimeError(
                    f"predict_batch returned {len(results)} results for {len(batch)} inputs"
                )
        else:
            results = [self._predict(p.value) for p in batch]
        return [to_json(r) for r in results]

    def close(self) -> None:
        closer = getattr(self.instance, "close", None)
        if callable(closer):
            closer()
        del self.instance
