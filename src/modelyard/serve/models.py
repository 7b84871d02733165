"""The model manager: which models are loaded, loading them once, and keeping within the budget.

Each configured model has a slot with a state:

    IDLE     not loaded (never, or evicted/unloaded)
    LOADING  a load is running; concurrent requests all wait for that one load
    READY    loaded, with its batching queue
    ERROR    the last load failed; the message is kept and shown by /health

Loads run one at a time in a loader thread, so that the growth of the process's resident memory
during a load is that model's measured size. When loaded models exceed the memory budget, the
least recently used READY model that is not pinned and has no request in flight is evicted.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import logging
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from modelyard.errors import ModelLoadFailed, ModelNotFound, ModelyardError
from modelyard.serve.batching import Batcher
from modelyard.serve.config import ModelConfig, ServeConfig
from modelyard.serve.history import TrafficHistory
from modelyard.serve.metrics import Metrics
from modelyard.serve.pipelines.base import Pipeline

log = logging.getLogger("modelyard.serve")
T = TypeVar("T")


class State(enum.StrEnum):
    IDLE = "IDLE"
    LOADING = "LOADING"
    READY = "READY"
    ERROR = "ERROR"


@dataclass
class ModelSlot:
    config: ModelConfig
    state: State = State.IDLE
    error: str | None = None
    pipeline: Pipeline | None = None
    batcher: Batcher | None = None
    resident_bytes: int = 0
    load_seconds: float | None = None
    last_used: float = 0.0
    loading: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def busy(self) -> bool:
        return self.batcher is not None and (self.batcher.in_flight > 0 or self.batcher.queued > 0)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: fall back to the peak, still monotonic
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def build_pipeline(config: ModelConfig, cache_dir: Path) -> tuple[Pipeline, int]:
    """Resolve, load and start one model (in a worker thread). Returns it with a size floor."""
    from modelyard.serve.resolve import resolve_model_ref

    path = resolve_model_ref(config.ref, cache_dir) if config.ref else None
    if config.is_custom:
        from modelyard.serve.custom import CustomPipeline, import_class

        assert config.pipeline is not None
        pipeline: Pipeline = CustomPipeline(import_class(config.pipeline), path, config)
        floor = 0
    else:
        from modelyard.serve.modelfiles import describe

        assert path is not None
        files = describe(path, config.pipeline)
        if files.task == "text-classification":
            from modelyard.serve.pipelines.text_classification import TextClassification

            pipeline = TextClassification(files, config)
        elif files.task == "feature-extraction":
            from modelyard.serve.pipelines.feature_extraction import FeatureExtraction

            pipeline = FeatureExtraction(files, config)
        else:
            raise ModelyardError(f"unknown task {files.task!r}")
        floor = files.weight_bytes
    pipeline.startup()
    return pipeline, floor


class ModelManager:
    def __init__(
        self,
        config: ServeConfig,
        metrics: Metrics,
        history: TrafficHistory | None,
        cache_dir: Path,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.history = history
        self.cache_dir = cache_dir
        self.budget = config.memory_budget
        self.slots = {m.name: ModelSlot(m) for m in config.models}
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="my-loader")
        self._known_sizes = history.sizes() if history else {}
        self.startup_done = asyncio.Event()
        self._startup: asyncio.Task[None] | None = None
        self._after_ready: set[asyncio.Task[None]] = set()

    def get(self, name: str) -> ModelSlot:
        try:
            return self.slots[name]
        except KeyError:
            raise ModelNotFound(name) from None

    @property
    def resident_bytes(self) -> int:
        return sum(s.resident_bytes for s in self.slots.values() if s.state is State.READY)

    def is_ready(self) -> bool:
        """The runner is ready once the models it loads at startup are no longer loading."""
        return self.startup_done.is_set()

    async def acquire(self, name: str) -> ModelSlot:
        """The slot of `name`, loaded. Raises ModelNotFound or ModelLoadFailed."""
        slot = self.get(name)
        while slot.state is not State.READY:
            if slot.state is State.ERROR:
                raise ModelLoadFailed(name, slot.error or "unknown error")
            await self.load(name)
        slot.last_used = time.monotonic()
        return slot

    async def load(self, name: str, retry: bool = False) -> ModelSlot:
        """Load `name` if it is not loaded; concurrent callers share one load."""
        slot = self.get(name)
        if slot.state is State.ERROR and retry:
            slot.state, slot.error = State.IDLE, None
        if slot.state is State.IDLE:
            slot.state = State.LOADING
            slot.loading = asyncio.get_running_loop().create_task(self._load(slot))
        if slot.loading is not None:
            await asyncio.shield(slot.loading)
        return slot

    async def _load(self, slot: ModelSlot) -> None:
        estimate = self._known_sizes.get(slot.name, 0)
        await self._make_room(estimate, keep=slot)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            pipeline, floor, resident = await loop.run_in_executor(
                self._loader, self._load_measured, slot.config
            )
        except Exception as exc:  # any failure of user or model code: the runner stays up
            slot.state, slot.error, slot.loading = State.ERROR, str(exc) or repr(exc), None
            log.error("model %s failed to load: %s", slot.name, slot.error)
            return
        slot.load_seconds = time.perf_counter() - started
        slot.pipeline = pipeline
        slot.batcher = Batcher(
            slot.name,
            pipeline.run,
            slot.config.batching,
            self.metrics,
            instances=slot.config.instances,
            run_alone=pipeline.run_alone,
        )
        slot.last_used = time.monotonic()
        slot.state, slot.error, slot.loading = State.READY, None, None
        self.metrics.load_seconds.observe(slot.load_seconds, model=slot.name)
        self._set_size(slot, max(resident, floor))
        log.info(
            "model %s READY in %.3f s, %d bytes resident",
            slot.name,
            slot.load_seconds,
            slot.resident_bytes,
        )
        task = loop.create_task(self._finish_loading(slot, pipeline))
        self._after_ready.add(task)
        task.add_done_callback(self._after_ready.discard)
        await self._make_room(0, keep=slot)

    async def _finish_loading(self, slot: ModelSlot, pipeline: Pipeline) -> None:
        """Run the model's `after_ready` work; what it holds counts toward its resident size."""
        loop = asyncio.get_running_loop()
        try:
            _, grown = await loop.run_in_executor(self._loader, _measured, pipeline.after_ready)
        except Exception as exc:  # it serves without; say why
            log.warning("model %s: after_ready failed: %s", slot.name, exc)
            return
        if slot.pipeline is not pipeline or grown == 0:  # unloaded meanwhile, or nothing to add
            return
        self._set_size(slot, slot.resident_bytes + grown)
        await self._make_room(0, keep=slot)

    def _set_size(self, slot: ModelSlot, size: int) -> None:
        slot.resident_bytes = size
        self.metrics.resident.set(size, model=slot.name)
        self._known_sizes[slot.name] = size
        if self.history is not None:
            self.history.set_size(slot.name, size)

    def _load_measured(self, config: ModelConfig) -> tuple[Pipeline, int, int]:
        if not config.is_custom:
            # Library imports are the process's, not the first model's, resident memory.
            import numpy  # noqa: F401
            import onnxruntime  # noqa: F401
            import tokenizers  # noqa: F401
        (pipeline, floor), resident = _measured(build_pipeline, config, self.cache_dir)
        return pipeline, floor, resident

    async def _make_room(self, needed: int, keep: ModelSlot) -> None:
        if self.budget is None:
            return
        while self.resident_bytes + needed > self.budget:
            candidates = [
                s
                for s in self.slots.values()
                if s.state is State.READY and not s.config.pinned and s is not keep and not s.busy
            ]
            if not candidates:
                if needed == 0:
                    log.warning(
                        "over the memory budget (%d > %d bytes): nothing can be evicted",
                        self.resident_bytes,
                        self.budget,
                    )
                return
            victim = min(candidates, key=lambda s: s.last_used)
            log.info(
                "evicting %s (%d bytes) to stay within the budget",
                victim.name,
                victim.resident_bytes,
            )
            await self._unload(victim)
            self.metrics.evictions.inc(model=victim.name)

    async def unload(self, name: str) -> ModelSlot:
        slot = self.get(name)
        if slot.loading is not None:
            await asyncio.shield(slot.loading)
        if slot.state is State.READY:
            await self._unload(slot)
        elif slot.state is State.ERROR:
            slot.state, slot.error = State.IDLE, None
        return slot

    async def _unload(self, slot: ModelSlot) -> None:
        batcher, pipeline = slot.batcher, slot.pipeline
        slot.state, slot.batcher, slot.pipeline = State.IDLE, None, None
        slot.resident_bytes = 0
        self.metrics.resident.set(0, model=slot.name)
        if batcher is not None:
            await batcher.close()
        if pipeline is not None:
            await asyncio.get_running_loop().run_in_executor(self._loader, _close, pipeline)

    def start(self) -> None:
        """Start loading, in the background, the models wanted at startup."""
        self._startup = asyncio.get_running_loop().create_task(self._preload())

    def startup_plan(self) -> list[str]:
        """`preload` models, then the hottest of the history window that fit in the budget."""
        plan = [m.name for m in self.config.models if m.preload]
        if self.history is None or not self.config.history_preload:
            return plan
        used = sum(self._known_sizes.get(n, 0) for n in plan)
        for name, _count in self.history.hottest(self.config.history_window_s):
            if name not in self.slots or name in plan:
                continue
            size = self._known_sizes.get(name, 0)
            if self.budget is not None and used + size > self.budget:
                continue
            plan.append(name)
            used += size
        return plan

    async def _preload(self) -> None:
        try:
            for name in self.startup_plan():
                await self.load(name)
        finally:
            self.startup_done.set()

    async def close(self) -> None:
        """Finish what the queues hold, then release every loaded model (its `close()`)."""
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()
        for task in list(self._after_ready):
            task.cancel()
        for slot in self.slots.values():
            if slot.batcher is not None:
                await slot.batcher.close()
        loop = asyncio.get_running_loop()
        for slot in self.slots.values():
            pipeline, slot.pipeline = slot.pipeline, None
            if pipeline is None:
                continue
            try:
                await loop.run_in_executor(self._loader, _close, pipeline)
            except Exception as exc:  # the user's close(): report it, close the others
                log.warning("closing model %r failed: %s", slot.name, exc)
        self._loader.shutdown(wait=False)


def _measured(func: Callable[..., T], *args: Any) -> tuple[T, int]:
    """`func(*args)` and how much the process's resident memory grew meanwhile (>= 0)."""
    before = _rss_bytes()
    result = func(*args)
    return result, max(0, _rss_bytes() - before)


def _close(pipeline: Pipeline) -> None:
    pipeline.close()
    del pipeline
    gc.collect()
