"""The runner's ASGI app (starlette): KServe V2, OpenAI embeddings, predict, health, metrics.

Handlers are thin: parse the protocol's body into a pipeline payload, call `Runner.infer`, and
format the result for the protocol. Every modelyard error becomes an HTTP answer in one place,
`error_response`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from modelyard import __version__
from modelyard.errors import (
    InferenceTimeout,
    InputTooLarge,
    InvalidInput,
    ModelLoadFailed,
    ModelNotFound,
    ModelUnavailable,
    ModelyardError,
    Overloaded,
)
from modelyard.serve.config import ServeConfig
from modelyard.serve.history import TrafficHistory
from modelyard.serve.metrics import Metrics
from modelyard.serve.models import ModelManager, ModelSlot, State
from modelyard.serve.pipelines.base import Prepared

log = logging.getLogger("modelyard.serve")

_HISTORY_FLUSH_S = 2.0


def _numpy_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


try:  # orjson writes float32 arrays without a Python float per element: 10x less CPU per answer
    import orjson

    def _dumps(content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY, default=_numpy_default)

except ImportError:  # pragma: no cover - orjson is in the runner extra

    def _dumps(content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), default=_numpy_default).encode()


class JSONResponse(Response):
    """JSON answers that may hold numpy arrays (embeddings) and numpy scalars."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _dumps(content)


def status_of(exc: BaseException) -> int:
    """The HTTP status of an error: the one mapping from our exception tree to the wire."""
    if isinstance(exc, ModelNotFound):
        return 404
    if isinstance(exc, InvalidInput):  # includes InputTooLarge (413)
        return exc.status
    if isinstance(exc, Overloaded):
        return 429
    if isinstance(exc, ModelLoadFailed | ModelUnavailable):
        return 503
    if isinstance(exc, InferenceTimeout):
        return 504
    if isinstance(exc, ModelyardError):
        return 400
    return 500


def error_response(exc: BaseException) -> JSONResponse:
    status = status_of(exc)
    headers = {}
    if isinstance(exc, Overloaded):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    message = str(exc) if status < 500 or isinstance(exc, ModelyardError) else "internal error"
    if status == 500:
        log.error("internal error: %r", exc, exc_info=exc)
        message = f"internal error: {type(exc).__name__}: {exc}"
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Runner:
    """What the handlers share: the config, the model manager, metrics and traffic history."""

    def __init__(self, config: ServeConfig, state_dir: Path) -> None:
        self.config = config
        self.state_dir = state_dir
        self.metrics = Metrics()
        self.history: TrafficHistory | None = None
        self.models: ModelManager | None = None
        self._openapi: dict[str, Any] | None = None
        self._flusher: asyncio.Task[None] | None = None

    @property
    def manager(self) -> ModelManager:
        assert self.models is not None, "runner not started"
        return self.models

    async def start(self) -> None:
        self.history = TrafficHistory(self.state_dir / "history.sqlite")
        cache = self.state_dir / "cache"
        self.models = ModelManager(self.config, self.metrics, self.history, cache)
        self.models.start()
        self._flusher = asyncio.get_running_loop().create_task(self._flush_history())

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        if self.models is not None:
            await self.models.close()
        if self.history is not None:
            self.history.close()

    async def _flush_history(self) -> None:
        assert self.history is not None
        while True:
            await asyncio.sleep(_HISTORY_FLUSH_S)
            await asyncio.get_running_loop().run_in_executor(None, self.history.flush)

    async def infer(self, name: str, payload: Any) -> tuple[Any, Prepared, ModelSlot]:
        """Run one request through model `name`'s queue; returns result, prepared input, slot."""
        slot_exists = name in self.manager.slots
        started = time.perf_counter()
        code = 200
        try:
            slot = await self.manager.acquire(name)
            assert slot.pipeline is not None and slot.batcher is not None
            # No await between prepare and submit: the slot cannot be evicted in between.
            prepared = slot.pipeline.prepare(payload)
            result = await slot.batcher.submit(prepared)
            return result, prepared, slot
        except BaseException as exc:
            code = status_of(exc)
            if isinstance(exc, Overloaded):
                self.metrics.overloads.inc(model=name)
            raise
        finally:
            if slot_exists:  # unknown names would grow label sets without bound
                self.metrics.requests.inc(model=name, code=str(code))
                self.metrics.latency.observe(time.perf_counter() - started, model=name)
                if self.history is not None and code == 200:
                    self.history.record(name)

    def openapi(self) -> dict[str, Any]:
        if self._openapi is None:
            from modelyard.serve.openapi import build_openapi
            from modelyard.serve.schemas import model_schemas

            self._openapi = build_openapi(model_schemas(self.config))
        return self._openapi


async def read_json(request: Request, limit: int) -> Any:
    """The parsed JSON body, refusing bodies over `limit` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise InputTooLarge(f"request body of {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InputTooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise InvalidInput("request body is empty: send a JSON object", 400)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}", 400) from exc


def _runner(request: Request) -> Runner:
    runner: Runner = request.app.state.runner
    return runner


# --- health, metrics, openapi ---


async def health(request: Request) -> Response:
    runner = _runner(request)
    manager = runner.manager
    models = {}
    for name, slot in manager.slots.items():
        models[name] = {
            "state": slot.state.value,
            "error": slot.error,
            "pipeline": slot.config.pipeline or "auto",
            "pinned": slot.config.pinned,
            "resident_bytes": slot.resident_bytes,
            "load_seconds": slot.load_seconds,
            "queued": slot.batcher.queued if slot.batcher else 0,
        }
    return JSONResponse(
        {
            "status": "ok" if manager.is_ready() else "starting",
            "resident_bytes": manager.resident_bytes,
            "memory_budget": manager.budget,
            "models": models,
        }
    )


async def metrics(request: Request) -> Response:
    return PlainTextResponse(
        _runner(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


async def openapi(request: Request) -> Response:
    return JSONResponse(_runner(request).openapi())


# --- KServe Open Inference Protocol V2 ---


async def v2_server(request: Request) -> Response:
    return JSONResponse(
        {"name": "modelyard", "version": __version__, "extensions": ["model_repository"]}
    )


async def v2_live(request: Request) -> Response:
    return JSONResponse({"live": True})


async def v2_ready(request: Request) -> Response:
    ready = _runner(request).manager.is_ready()
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


def _task_of(slot: ModelSlot) -> str:
    if slot.pipeline is not None:
        return slot.pipeline.task
    if slot.config.is_custom:
        return "custom"
    return slot.config.pipeline or "auto"  # inferred from the files when the model loads


async def v2_model_metadata(request: Request) -> Response:
    slot = _runner(request).manager.get(request.path_params["name"])
    task = _task_of(slot)
    inputs = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    if task == "feature-extraction":
        dim = getattr(slot.pipeline, "dim", -1)
        outputs = [{"name": "embedding", "datatype": "FP32", "shape": [-1, dim]}]
    elif task == "text-classification":
        outputs = [
            {"name": "label", "datatype": "BYTES", "shape": [-1, -1]},
            {"name": "score", "datatype": "FP32", "shape": [-1, -1]},
        ]
    elif task == "custom":
        inputs, outputs = (
            [{"name": "input", "datatype": "BYTES", "shape": [1]}],
            [{"name": "output", "datatype": "BYTES", "shape": [1]}],
        )
    else:  # not loaded yet and the task is inferred from the files at load time
        outputs = []
    return JSONResponse(
        {
            "name": slot.name,
            "versions": ["1"],
            "platform": "modelyard_custom" if task == "custom" else "onnxruntime_onnx",
            "inputs": inputs,
            "outputs": outputs,
        }
    )


async def v2_model_ready(request: Request) -> Response:
    slot = _runner(request).manager.get(request.path_params["name"])
    ready = slot.state is State.READY
    return JSONResponse(
        {"name": slot.name, "ready": ready, "state": slot.state.value, "error": slot.error},
        status_code=200 if ready else 503,
    )


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def _v2_texts(body: Any) -> tuple[list[str], dict[str, Any], str | None]:
    if not isinstance(body, dict):
        raise InvalidInput("an inference request must be a JSON object")
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidInput("inputs must be an array of tensors")
    if not inputs:
        raise InvalidInput("inputs is empty: give one BYTES tensor of texts", 400)
    if len(inputs) != 1:
        raise InvalidInput(f"expected one input tensor of texts, got {len(inputs)}")
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise InvalidInput("an input tensor must be an object")
    for key in ("name", "shape", "datatype", "data"):
        if key not in tensor:
            raise InvalidInput(f"input tensor is missing {key!r}")
    if tensor["datatype"] != "BYTES":
        raise InvalidInput(f"input datatype must be BYTES (texts), not {tensor['datatype']!r}")
    shape = tensor["shape"]
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidInput("shape must be an array of non-negative integers")
    texts = _flatten(tensor["data"])
    count = 1
    for d in shape:
        count *= d
    if count != len(texts):
        raise InvalidInput(f"shape {shape} holds {count} elements but data holds {len(texts)}")
    if not all(isinstance(t, str) for t in texts):
        raise InvalidInput("BYTES data must be strings")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput("parameters must be an object")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("id must be a string")
    return texts, params, request_id


async def v2_infer(request: Request) -> Response:
    runner = _runner(request)
    name = request.path_params["name"]
    slot = runner.manager.get(name)
    body = await read_json(request, runner.config.max_body_bytes)
    if slot.config.is_custom:
        raise InvalidInput(
            f"model {name!r} has a custom pipeline: call /v1/models/{name}/predict", 400
        )
    texts, params, request_id = _v2_texts(body)
    payload = {"inputs": texts, "parameters": {k: v for k, v in params.items() if k == "top_k"}}
    result, _prepared, slot = await runner.infer(name, payload)
    n = len(texts)
    if slot.pipeline is not None and slot.pipeline.task == "feature-extraction":
        outputs = [
            {
                "name": "embedding",
                "datatype": "FP32",
                "shape": [n, int(result.shape[1])],
                "data": result.reshape(-1),
            }
        ]
    else:
        k = len(result[0]) if result else 0
        outputs = [
            {
                "name": "label",
                "datatype": "BYTES",
                "shape": [n, k],
                "data": [s["label"] for row in result for s in row],
            },
            {
                "name": "score",
                "datatype": "FP32",
                "shape": [n, k],
                "data": [s["score"] for row in result for s in row],
            },
        ]
    return JSONResponse(
        {"model_name": name, "id": request_id or uuid.uuid4().hex, "outputs": outputs}
    )


async def v2_load(request: Request) -> Response:
    manager = _runner(request).manager
    slot = await manager.load(request.path_params["name"], retry=True)
    if slot.state is State.ERROR:
        raise ModelLoadFailed(slot.name, slot.error or "unknown error")
    return JSONResponse({"name": slot.name, "state": slot.state.value})


async def v2_unload(request: Request) -> Response:
    slot = await _runner(request).manager.unload(request.path_params["name"])
    return JSONResponse({"name": slot.name, "state": slot.state.value})


# --- OpenAI-compatible embeddings, simple predict ---


async def embeddings(request: Request) -> Response:
    runner = _runner(request)
    body = await read_json(request, runner.config.max_body_bytes)
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object with input and model")
    name = body.get("model")
    if not isinstance(name, str):
        raise InvalidInput("model must be a string naming a served model")
    if "input" not in body:
        raise InvalidInput("input is missing: a string or a list of strings")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise InvalidInput("encoding_format must be 'float' or 'base64'")
    slot = runner.manager.get(name)
    if slot.config.is_custom or slot.config.pipeline == "text-classification":
        raise InvalidInput(f"model {name!r} is not a feature-extraction model", 400)
    result, prepared, slot = await runner.infer(name, {"inputs": body["input"]})
    if slot.pipeline is not None and slot.pipeline.task != "feature-extraction":
        raise InvalidInput(f"model {name!r} is not a feature-extraction model", 400)
    data = []
    for i, row in enumerate(result):
        vector: Any = (
            base64.b64encode(row.astype("<f4").tobytes()).decode()
            if fmt == "base64"
            else row.tolist()
        )
        data.append({"object": "embedding", "index": i, "embedding": vector})
    usage = {"prompt_tokens": prepared.tokens, "total_tokens": prepared.tokens}
    return JSONResponse({"object": "list", "data": data, "model": name, "usage": usage})


async def predict(request: Request) -> Response:
    runner = _runner(request)
    name = request.path_params["name"]
    slot = runner.manager.get(name)
    body = await read_json(request, runner.config.max_body_bytes)
    result, _prepared, slot = await runner.infer(name, body)
    if slot.config.is_custom:
        return JSONResponse(result)
    if slot.pipeline is not None and slot.pipeline.task == "feature-extraction":
        return JSONResponse({"model": name, "embeddings": result})
    return JSONResponse({"model": name, "outputs": result})


async def _on_error(request: Request, exc: Exception) -> Response:
    return error_response(exc)


def _guard(handler: Any) -> Any:
    """Map every error of a handler to a JSON answer (starlette's 500 page is HTML)."""

    async def wrapped(request: Request) -> Response:
        try:
            response: Response = await handler(request)
            return response
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return error_response(exc)

    wrapped.__name__ = handler.__name__
    return wrapped


def create_app(config: ServeConfig, state_dir: Path) -> Starlette:
    runner = Runner(config, state_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()

    routes = [
        Route("/health", _guard(health)),
        Route("/metrics", _guard(metrics)),
        Route("/openapi.json", _guard(openapi)),
        Route("/v2", _guard(v2_server)),
        Route("/v2/health/live", _guard(v2_live)),
        Route("/v2/health/ready", _guard(v2_ready)),
        Route("/v2/models/{name}", _guard(v2_model_metadata)),
        Route("/v2/models/{name}/ready", _guard(v2_model_ready)),
        Route("/v2/models/{name}/infer", _guard(v2_infer), methods=["POST"]),
        Route("/v2/repository/models/{name}/load", _guard(v2_load), methods=["POST"]),
        Route("/v2/repository/models/{name}/unload", _guard(v2_unload), methods=["POST"]),
        Route("/v1/embeddings", _guard(embeddings), methods=["POST"]),
        Route("/v1/models/{name}/predict", _guard(predict), methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={500: _on_error})
    app.state.runner = runner
    return app
