"""KServe Open Inference Protocol V2: server and model health, metadata, infer (texts in one
BYTES tensor) and the model repository extension (load, unload)."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from modelyard import __version__
from modelyard.errors import InvalidInput, ModelLoadFailed
from modelyard.serve.models import ModelSlot, State
from modelyard.serve.runner import Runner, runner_of
from modelyard.serve.wire import BodyReader, JSONResponse


async def server_metadata(request: Request) -> Response:
    return JSONResponse(
        {"name": "modelyard", "version": __version__, "extensions": ["model_repository"]}
    )


async def live(request: Request) -> Response:
    return JSONResponse({"live": True})


async def ready(request: Request) -> Response:
    ready = runner_of(request).manager.is_ready()
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


def _task_of(slot: ModelSlot) -> str:
    if slot.pipeline is not None:
        return slot.pipeline.task
    if slot.config.is_custom:
        return "custom"
    return slot.config.pipeline or "auto"  # inferred from the files when the model loads


async def model_metadata(request: Request) -> Response:
    slot = runner_of(request).manager.get(request.path_params["name"])
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


async def model_ready(request: Request) -> Response:
    slot = runner_of(request).manager.get(request.path_params["name"])
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


async def infer(runner: Runner, path: dict[str, str], read: BodyReader) -> Any:
    name = path["name"]
    slot = runner.manager.get(name)
    body = await read()
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
    return {"model_name": name, "id": request_id or uuid.uuid4().hex, "outputs": outputs}


async def load(request: Request) -> Response:
    manager = runner_of(request).manager
    slot = await manager.load(request.path_params["name"], retry=True)
    if slot.state is State.ERROR:
        raise ModelLoadFailed(slot.name, slot.error or "unknown error")
    return JSONResponse({"name": slot.name, "state": slot.state.value})


async def unload(request: Request) -> Response:
    slot = await runner_of(request).manager.unload(request.path_params["name"])
    return JSONResponse({"name": slot.name, "state": slot.state.value})
