"""The runner's ASGI app (starlette): routes, and the lifespan that starts and drains it.

APIs: KServe V2 (`handlers/kserve.py`), OpenAI embeddings and predict (`handlers/inference.py`),
health, metrics and OpenAPI (`handlers/ops.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.serve.config import ServeConfig
from modelyard.serve.handlers import inference, kserve, ops
from modelyard.serve.runner import Runner
from modelyard.serve.wire import error_response, guard


async def _on_error(request: Request, exc: Exception) -> Response:
    return error_response(exc)


def create_app(config: ServeConfig, state_dir: Path) -> Starlette:
    """The app serving `config`'s models, keeping history and caches in `state_dir`."""
    runner = Runner(config, state_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()

    # Inference first: starlette tries routes in order, a regex each.
    routes = [
        Route("/v1/embeddings", guard(inference.embeddings), methods=["POST"]),
        Route("/v2/models/{name}/infer", guard(kserve.infer), methods=["POST"]),
        Route("/v1/models/{name}/predict", guard(inference.predict), methods=["POST"]),
        Route("/health", guard(ops.health)),
        Route("/metrics", guard(ops.metrics)),
        Route("/openapi.json", guard(ops.openapi)),
        Route("/v2", guard(kserve.server_metadata)),
        Route("/v2/health/live", guard(kserve.live)),
        Route("/v2/health/ready", guard(kserve.ready)),
        Route("/v2/models/{name}", guard(kserve.model_metadata)),
        Route("/v2/models/{name}/ready", guard(kserve.model_ready)),
        Route("/v2/repository/models/{name}/load", guard(kserve.load), methods=["POST"]),
        Route("/v2/repository/models/{name}/unload", guard(kserve.unload), methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={500: _on_error})
    app.state.runner = runner
    return app
