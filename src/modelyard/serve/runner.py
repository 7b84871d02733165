"""What the request handlers share: config, model manager, metrics and traffic history."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from starlette.requests import Request

from modelyard.errors import Overloaded
from modelyard.serve.config import ServeConfig
from modelyard.serve.history import TrafficHistory
from modelyard.serve.metrics import Metrics
from modelyard.serve.models import ModelManager, ModelSlot
from modelyard.serve.pipelines.base import Prepared
from modelyard.serve.wire import status_of

_HISTORY_FLUSH_S = 2.0


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


def runner_of(request: Request) -> Runner:
    runner: Runner = request.app.state.runner
    return runner
