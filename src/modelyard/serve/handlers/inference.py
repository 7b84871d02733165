"""OpenAI-compatible `POST /v1/embeddings` and the simple `POST /v1/models/{name}/predict`."""

from __future__ import annotations

import base64
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.serve.runner import Runner
from modelyard.serve.wire import BodyReader


async def embeddings(runner: Runner, params: dict[str, str], read: BodyReader) -> Any:
    body = await read()
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
        # orjson writes the float32 row as is; base64 is what OpenAI clients ask for to save bytes
        vector: Any = row
        if fmt == "base64":
            vector = base64.b64encode(row.astype("<f4").tobytes()).decode()
        data.append({"object": "embedding", "index": i, "embedding": vector})
    usage = {"prompt_tokens": prepared.tokens, "total_tokens": prepared.tokens}
    return {"object": "list", "data": data, "model": name, "usage": usage}


async def predict(runner: Runner, params: dict[str, str], read: BodyReader) -> Any:
    name = params["name"]
    slot = runner.manager.get(name)
    body = await read()
    result, _prepared, slot = await runner.infer(name, body)
    if slot.config.is_custom:
        return result
    if slot.pipeline is not None and slot.pipeline.task == "feature-extraction":
        return {"model": name, "embeddings": result}
    return {"model": name, "outputs": result}
