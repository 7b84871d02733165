"""The OpenAPI 3 document of the runner, generated from the routes we serve and the models.

The document for a runner with no models is committed as `src/modelyard/serve/openapi.json`
(regenerate: `python -m modelyard.serve.openapi > src/modelyard/serve/openapi.json`); a test
checks it is what the app serves. Each model adds `/v1/models/<name>/predict` with its own typed
request and response schemas.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from modelyard import __version__


@dataclass
class ModelSchema:
    name: str
    task: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    components: dict[str, Any] = field(default_factory=dict)


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json(_ref("Error"))}


_NAME_PARAM = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "Model name, as configured.",
}

_TENSOR_IN = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string"},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
    "required": ["name", "shape", "datatype", "data"],
}

_TENSOR_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["name", "datatype", "shape"],
}

_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
    "InferenceRequest": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": _TENSOR_IN, "minItems": 1},
            "outputs": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["inputs"],
    },
    "InferenceResponse": {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "outputs": {"type": "array", "items": _TENSOR_IN},
        },
        "required": ["model_name", "outputs"],
    },
    "ModelMetadata": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _TENSOR_META},
            "outputs": {"type": "array", "items": _TENSOR_META},
        },
        "required": ["name", "platform", "inputs", "outputs"],
    },
    "EmbeddingRequest": {
        "type": "object",
        "properties": {
            "input": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1},
                ]
            },
            "model": {"type": "string"},
            "encoding_format": {"type": "string", "enum": ["float", "base64"]},
            "user": {"type": "string"},
        },
        "required": ["input", "model"],
    },
    "EmbeddingResponse": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "model": {"type": "string"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "object": {"type": "string", "enum": ["embedding"]},
                        "index": {"type": "integer"},
                        "embedding": {
                            "oneOf": [
                                {"type": "array", "items": {"type": "number"}},
                                {"type": "string"},
                            ]
                        },
                    },
                    "required": ["object", "index", "embedding"],
                },
            },
            "usage": {
                "type": "object",
                "properties": {
                    "prompt_tokens": {"type": "integer"},
                    "total_tokens": {"type": "integer"},
                },
            },
        },
        "required": ["object", "data", "model", "usage"],
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "starting"]},
            "resident_bytes": {"type": "integer"},
            "memory_budget": {"type": ["integer", "null"]},
            "models": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "state": {"type": "string", "enum": ["IDLE", "LOADING", "READY", "ERROR"]},
                        "error": {"type": ["string", "null"]},
                        "pipeline": {"type": "string"},
                        "pinned": {"type": "boolean"},
                        "resident_bytes": {"type": "integer"},
                        "load_seconds": {"type": ["number", "null"]},
                        "queued": {"type": "integer"},
                    },
                },
            },
        },
    },
}

_MODEL_ERRORS = {
    "404": _error("Unknown model."),
    "503": _error("The model failed to load, or is unloading."),
}
_INFER_ERRORS = {
    **_MODEL_ERRORS,
    "400": _error("Malformed or empty input."),
    "413": _error("Too many texts, or a text too long."),
    "422": _error("Input of the wrong type."),
    "429": {
        "description": "The model's queue is full; retry after the Retry-After seconds.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": _json(_ref("Error")),
    },
    "504": _error("The request timed out."),
}


def _get(summary: str, ok: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": {"200": ok, **(extra or {})}}}


def build_openapi(models: list[ModelSchema]) -> dict[str, Any]:
    ok_json = {"description": "OK", "content": _json({"type": "object"})}
    paths: dict[str, Any] = {
        "/health": _get(
            "Runner and per-model status.", {"description": "OK", "content": _json(_ref("Health"))}
        ),
        "/metrics": _get(
            "Prometheus metrics.",
            {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
        ),
        "/v2": _get("Server metadata (KServe V2).", ok_json),
        "/v2/health/live": _get("Liveness (KServe V2).", ok_json),
        "/v2/health/ready": _get(
            "Readiness: 200 once startup loading is done (KServe V2).",
            ok_json,
            {"503": {"description": "Still loading", "content": _json({"type": "object"})}},
        ),
        "/v2/models/{name}": {
            "parameters": [_NAME_PARAM],
            **_get(
                "Model metadata (KServe V2).",
                {"description": "OK", "content": _json(_ref("ModelMetadata"))},
                {"404": _error("Unknown model.")},
            ),
        },
        "/v2/models/{name}/ready": {
            "parameters": [_NAME_PARAM],
            **_get(
                "Model readiness (KServe V2).",
                ok_json,
                {
                    "404": _error("Unknown model."),
                    "503": {"description": "Not loaded", "content": _json({"type": "object"})},
                },
            ),
        },
        "/v2/models/{name}/infer": {
            "parameters": [_NAME_PARAM],
            "post": {
                "summary": "Inference (KServe V2); text goes in one BYTES tensor.",
                "requestBody": {"required": True, "content": _json(_ref("InferenceRequest"))},
                "responses": {
                    "200": {"description": "OK", "content": _json(_ref("InferenceResponse"))},
                    **_INFER_ERRORS,
                },
            },
        },
        "/v2/repository/models/{name}/load": {
            "parameters": [_NAME_PARAM],
            "post": {
                "summary": "Load a model now (KServe V2 repository extension).",
                "responses": {"200": ok_json, **_MODEL_ERRORS},
            },
        },
        "/v2/repository/models/{name}/unload": {
            "parameters": [_NAME_PARAM],
            "post": {
                "summary": "Unload a model (KServe V2 repository extension).",
                "responses": {"200": ok_json, "404": _error("Unknown model.")},
            },
        },
        "/v1/embeddings": {
            "post": {
                "summary": "Embeddings, OpenAI-compatible.",
                "requestBody": {"required": True, "content": _json(_ref("EmbeddingRequest"))},
                "responses": {
                    "200": {"description": "OK", "content": _json(_ref("EmbeddingResponse"))},
                    **_INFER_ERRORS,
                },
            }
        },
        "/v1/models/{name}/predict": {
            "parameters": [_NAME_PARAM],
            "post": {
                "summary": "Predict with any model; the body is the model's own input type.",
                "requestBody": {"required": True, "content": _json({})},
                "responses": {"200": ok_json, **_INFER_ERRORS},
            },
        },
    }
    schemas = dict(_SCHEMAS)
    for model in models:
        schemas.update(model.components)
        paths[f"/v1/models/{model.name}/predict"] = {
            "post": {
                "summary": f"Predict with {model.name} ({model.task}).",
                "requestBody": {"required": True, "content": _json(model.input_schema)},
                "responses": {
                    "200": {"description": "OK", "content": _json(model.output_schema)},
                    **_INFER_ERRORS,
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "modelyard runner",
            "version": __version__,
            "description": "KServe Open Inference Protocol V2, OpenAI-compatible embeddings, "
            "and a simple predict API, for every model the runner serves.",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(dumps(build_openapi([])))
