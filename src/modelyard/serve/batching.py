"""Per-model dynamic batching: one bounded queue, owned by one task.

Requests wait in the queue; the owning task takes the first one and adds more while the batch
stays within `max_batch_size` rows and `max_batch_tokens` tokens, waiting up to `max_wait_ms`
for them. With `max_wait_ms = 0` it takes what is already queued: under load the queue fills
while the model runs the previous batch, and a lone request goes straight through. Batches run in
the model's own thread pool (onnxruntime releases the GIL), so a slow model never holds up
another. A full queue raises `Overloaded` at once; a request not answered in `timeout_s` raises
`InferenceTimeout` and is dropped from its batch if it has not started.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import InferenceTimeout, ModelUnavailable, Overloaded
from modelyard.serve.config import BatchingConfig
from modelyard.serve.metrics import Metrics
from modelyard.serve.pipelines.base import Prepared


@dataclass
class _Item:
    prepared: Prepared
    future: asyncio.Future[Any]
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    """The queue of one model. `submit` from request handlers; `close` drains it."""

    def __init__(
        self,
        name: str,
        run: Callable[[list[Prepared]], list[Any]],
        config: BatchingConfig,
        metrics: Metrics,
    ) -> None:
        self.name = name
        self._run = run
        self.config = config
        self.max_rows = 1 if config.sequential else config.max_batch_size
        self._metrics = metrics
        self._pending: collections.deque[_Item] = collections.deque()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(config.concurrency)
        self._executor = ThreadPoolExecutor(config.concurrency, thread_name_prefix=f"my-{name}")
        self._running: set[asyncio.Task[None]] = set()
        self._closing = False
        self.in_flight = 0  # submitted and not yet answered
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batch-{name}")

    @property
    def queued(self) -> int:
        return len(self._pending)

    async def submit(self, prepared: Prepared) -> Any:
        """Queue one request and wait for its result.

        Raises: Overloaded (queue full), InferenceTimeout, ModelUnavailable (closing), or the
        pipeline's own exception.
        """
        if self._closing:
            raise ModelUnavailable(f"model {self.name!r} is unloading")
        if len(self._pending) >= self.config.max_queue:
            raise Overloaded(self.name, retry_after=max(1.0, self.config.max_wait_ms / 1000))
        item = _Item(prepared, asyncio.get_running_loop().create_future())
        self._pending.append(item)
        self.in_flight += 1
        self._wake.set()
        try:
            timeout = self.config.timeout_s or None
            return await asyncio.wait_for(asyncio.shield(item.future), timeout)
        except TimeoutError as exc:
            item.future.cancel()  # skipped if it has not started; its result is dropped if it has
            raise InferenceTimeout(
                f"model {self.name!r} did not answer within {self.config.timeout_s:g} s"
            ) from exc
        finally:
            self.in_flight -= 1

    async def _next_batch(self) -> list[_Item] | None:
        while not self._pending:
            if self._closing:
                return None
            self._wake.clear()
            await self._wake.wait()
        batch = [self._pending.popleft()]
        rows, tokens = batch[0].prepared.rows, batch[0].prepared.tokens
        deadline = time.perf_counter() + self.config.max_wait_ms / 1000
        while rows < self.max_rows:
            if self._pending:
                nxt = self._pending[0].prepared
                if rows + nxt.rows > self.max_rows:
                    break
                if tokens + nxt.tokens > self.config.max_batch_tokens:
                    break
                batch.append(self._pending.popleft())
                rows += nxt.rows
                tokens += nxt.tokens
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or self._closing:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        while True:
            await self._slots.acquire()
            batch = await self._next_batch()
            if batch is None:
                self._slots.release()
                return
            live = [item for item in batch if not item.future.done()]
            if not live:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._dispatch(live))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _dispatch(self, batch: list[_Item]) -> None:
        try:
            now = time.perf_counter()
            for item in batch:
                self._metrics.queue_wait.observe(now - item.enqueued, model=self.name)
            rows = sum(i.prepared.rows for i in batch)
            self._metrics.batch_size.observe(rows, model=self.name)
            self._metrics.tokens.inc(sum(i.prepared.tokens for i in batch), model=self.name)
            loop = asyncio.get_running_loop()
            prepared = [i.prepared for i in batch]
            try:
                results = await loop.run_in_executor(self._executor, self._run, prepared)
            except Exception as exc:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                return
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)
        finally:
            self._slots.release()

    async def close(self) -> None:
        """Stop taking requests, finish the queued ones, stop the task and the threads."""
        self._closing = True
        self._wake.set()
        await self._task
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self._executor.shutdown(wait=False)
