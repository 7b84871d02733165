"""Operations: `/health` (state per model), Prometheus `/metrics`, `/openapi.json`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from modelyard.serve.runner import runner_of
from modelyard.serve.wire import JSONResponse


async def health(request: Request) -> Response:
    runner = runner_of(request)
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
        runner_of(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


async def openapi(request: Request) -> Response:
    return JSONResponse(runner_of(request).openapi())
