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
from starlette.routing import Route, compile_path
from starlette.types import Receive, Scope, Send

from modelyard.serve.config import ServeConfig
from modelyard.serve.handlers import inference, kserve, ops
from modelyard.serve.runner import Runner
from modelyard.serve.wire import LeanEndpoint, error_response, guard


async def _on_error(request: Request, exc: Exception) -> Response:
    return error_response(exc)


class InferenceFirst:
    """The app, with a short way in for `POST` to the inference routes.

    Those requests go straight to their endpoint (the same one the app routes them to), past
    starlette's middleware and router; any other request, or method, goes through the app.
    """

    def __init__(self, app: Starlette, routes: list[tuple[str, LeanEndpoint]]) -> None:
        self.app = app
        # starlette's own path patterns: the same matches as the routes behind
        self._routes = [(compile_path(path)[0], endpoint) for path, endpoint in routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for pattern, endpoint in self._routes:
                match = pattern.match(scope["path"])
                if match:
                    scope["path_params"] = match.groupdict()
                    await endpoint(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def create_app(config: ServeConfig, state_dir: Path) -> InferenceFirst:
    """The app serving `config`'s models, keeping history and caches in `state_dir`."""
    runner = Runner(config, state_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()

    inference_routes = [
        ("/v1/embeddings", LeanEndpoint(inference.embeddings, runner)),
        ("/v2/models/{name}/infer", LeanEndpoint(kserve.infer, runner)),
        ("/v1/models/{name}/predict", LeanEndpoint(inference.predict, runner)),
    ]
    routes = [
        *(Route(path, endpoint, methods=["POST"]) for path, endpoint in inference_routes),
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
    return InferenceFirst(app, inference_routes)
