"""Per-model dynamic batching: one bounded queue, served by the model's instance threads.

Requests wait in the queue. Each of the model's `instances` threads (one in sequential mode)
forms a batch when it becomes free, runs it, and hands the results back to the event loop; like
Triton's instance groups, several batches of one model may run at once, each on its own thread
(onnxruntime sessions are thread-safe and release the GIL). A batch takes the first queued
request and more while it stays within `max_batch_size` rows and `max_batch_tokens` tokens,
waiting up to `max_wait_ms` for them (one instance gathers at a time). With `max_wait_ms = 0` it
takes what is already queued, no more than a fair share when other instances are free too: under
load the queue fills while the model runs, and a lone request goes straight through. The fair
share matters: with two instances taking whole queues, one ran 32 requests while the other
idled (700 req/s at 32 connections on 2 cores, 1,050-1,250 with the share).

Batches are formed on the instance thread that became free, not on the event loop, which only
queues requests and sets results: no loop round trip between "model free" and "next batch
running". A batch that starts while nothing else of the model is running or waiting goes to
`run_alone` (a session with more threads: lower latency when the model is quiet). A full queue
raises `Overloaded` at once; a request not answered in `timeout_s` raises `InferenceTimeout` and
is dropped from its batch if it has not started.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Callable
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
    dropped: bool = False  # timed out or cancelled before its batch started


class Batcher:
    """The queue of one model. `submit` from request handlers; `close` drains it.

    `instances` is how many batches may run at once (1 in sequential mode); a batch that starts
    while the other instances are idle goes to `run_alone` (default: `run`).
    """

    def __init__(
        self,
        name: str,
        run: Callable[[list[Prepared]], list[Any]],
        config: BatchingConfig,
        metrics: Metrics,
        instances: int = 1,
        run_alone: Callable[[list[Prepared]], list[Any]] | None = None,
    ) -> None:
        self.name = name
        self._run = run
        self._run_alone = run_alone or run
        self.config = config
        self.max_rows = 1 if config.sequential else config.max_batch_size
        self.instances = 1 if config.sequential else max(1, instances)
        self._metrics = metrics
        self._loop = asyncio.get_running_loop()
        self._pending: collections.deque[_Item] = collections.deque()
        self._lock = threading.Lock()
        # Idle instances, each waiting on its own condition (all on `_lock`); a new request wakes
        # the one that went idle last: its thread and memory are the warmest.
        self._sleepers: list[threading.Condition] = []
        # One instance gathers a batch at a time; without max_wait_ms, taking what is queued is
        # one step under `_lock`, and idle instances wait on their condition alone.
        self._forming = threading.Lock()
        self._gathering = config.max_wait_ms > 0 and self.instances > 1
        # Requests queued in the current pass of the event loop, not yet offered to the
        # instances (see `_offer`).
        self._arriving = False
        self._idle = self.instances  # instances not running a batch (under _lock)
        self._closing = False
        self.in_flight = 0  # submitted and not yet answered (event loop only)
        self._alive = self.instances
        self._stopped: asyncio.Future[None] = self._loop.create_future()
        for i in range(self.instances):
            threading.Thread(target=self._work, name=f"my-{name}-{i}", daemon=True).start()

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
        future = self._loop.create_future()
        item = _Item(prepared, future)
        with self._lock:
            self._pending.append(item)
            if not self._arriving:
                self._arriving = True
                self._loop.call_soon(self._offer)
        self.in_flight += 1
        try:
            if not self.config.timeout_s:
                return await future
            async with asyncio.timeout(self.config.timeout_s):
                return await future
        except TimeoutError as exc:
            raise InferenceTimeout(
                f"model {self.name!r} did not answer within {self.config.timeout_s:g} s"
            ) from exc
        finally:
            # On timeout or cancellation: skipped if its batch has not started; a late result
            # is dropped.
            item.dropped = True
            self.in_flight -= 1

    def _offer(self) -> None:
        """Offer what this pass of the event loop queued to the idle instances, at once.

        Requests come in bursts: a batch's answers go out together and closed-loop clients send
        their next requests together; the loop reads them in one pass, each request's handler
        running up to `submit`. Waking an instance at the first of them made it run a batch of
        one while the rest arrived (on 2 cores at 32 connections: a third of the batches held one
        request). `_offer` runs after the pass's handlers, so the burst is one batch.
        """
        with self._lock:
            self._arriving = False
            for _ in range(min(len(self._pending), len(self._sleepers))):
                self._sleepers.pop().notify()

    def _sleep(self, cond: threading.Condition, timeout: float | None = None) -> None:
        """Wait (holding `_lock`) until a request comes or `timeout` passes."""
        self._sleepers.append(cond)
        cond.wait(timeout)
        if cond in self._sleepers:  # timed out
            self._sleepers.remove(cond)

    def _take(self, cond: threading.Condition) -> tuple[list[_Item], bool] | None:
        """The next batch, and whether no other batch is running; None: closed."""
        with self._lock:
            while True:
                while self._pending and self._pending[0].dropped:
                    self._pending.popleft()
                if self._pending and not self._arriving:
                    break
                if self._closing and not self._pending:
                    return None
                self._sleep(cond)
            first = self._pending.popleft()
            batch = [first]
            rows, tokens = first.prepared.rows, first.prepared.tokens
            limit = self.max_rows
            wait_s = self.config.max_wait_ms / 1000
            if not wait_s and self._idle > 1:
                # Share what is queued with the other free instances rather than leave them
                # idle behind one full batch.
                share = -(-(len(self._pending) + 1) // self._idle)
                limit = min(limit, max(share, 1))
            deadline = time.perf_counter() + wait_s
            while rows < limit:
                if self._pending:
                    nxt = self._pending[0]
                    if nxt.dropped:
                        self._pending.popleft()
                        continue
                    if rows + nxt.prepared.rows > self.max_rows:
                        break
                    if tokens + nxt.prepared.tokens > self.config.max_batch_tokens:
                        break
                    batch.append(self._pending.popleft())
                    rows += nxt.prepared.rows
                    tokens += nxt.prepared.tokens
                    continue
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or self._closing:
                    break
                self._sleep(cond, remaining)
            self._idle -= 1
            # Alone: no other batch running, and no other request waiting for an answer: under
            # load the next batch would start beside this one and find the cores taken.
            alone = self._idle == self.instances - 1 and self.in_flight <= len(batch)
            return batch, alone

    def _work(self) -> None:
        cond = threading.Condition(self._lock)
        try:
            while True:
                if self._gathering:
                    with self._forming:
                        taken = self._take(cond)
                else:
                    taken = self._take(cond)
                if taken is None:
                    return
                batch, alone = taken
                try:
                    answer = self._run_batch(batch, self._run_alone if alone else self._run)
                finally:
                    with self._lock:
                        self._idle += 1
                # Answered once this instance counts as idle: a request sent in reply to the
                # answer then finds the model quiet and may run alone.
                self._call_soon(*answer)
        finally:
            self._call_soon(self._instance_stopped)

    def _run_batch(
        self, batch: list[_Item], run: Callable[[list[Prepared]], list[Any]]
    ) -> tuple[Any, ...]:
        """Run one batch; returns the callback (and its arguments) that answers its requests."""
        now = time.perf_counter()
        metrics = self._metrics
        for item in batch:
            metrics.queue_wait.observe(now - item.enqueued, model=self.name)
        metrics.batch_size.observe(sum(i.prepared.rows for i in batch), model=self.name)
        metrics.tokens.inc(sum(i.prepared.tokens for i in batch), model=self.name)
        try:
            results = run([i.prepared for i in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
        except Exception as exc:  # the pipeline's error goes to each request of the batch
            return _fail, batch, exc
        return _deliver, batch, results

    def _call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(callback, *args)

    def _instance_stopped(self) -> None:
        self._alive -= 1
        if self._alive == 0 and not self._stopped.done():
            self._stopped.set_result(None)

    async def close(self) -> None:
        """Stop taking requests, finish the queued ones, stop the instance threads."""
        self._closing = True
        with self._lock:
            for cond in self._sleepers:
                cond.notify()
            self._sleepers.clear()
        await self._stopped


def _deliver(batch: list[_Item], results: list[Any]) -> None:
    for item, result in zip(batch, results, strict=True):
        if not item.future.done():
            item.future.set_result(result)


def _fail(batch: list[_Item], exc: Exception) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)
