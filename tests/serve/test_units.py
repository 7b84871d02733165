"""In-process tests of the runner's parts: config parsing, batching, model refs, metrics."""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import InferenceTimeout, ModelRefError, Overloaded, ServeConfigError
from modelyard.serve import models
from modelyard.serve.batching import Batcher
from modelyard.serve.config import (
    BatchingConfig,
    ModelConfig,
    ServeConfig,
    config_from_dict,
    load_config,
    parse_model_flag,
    parse_size,
)
from modelyard.serve.metrics import Metrics
from modelyard.serve.pipelines.base import Pipeline, Prepared
from modelyard.serve.pipelines.text import split_by_length
from modelyard.serve.resolve import is_registry_ref, resolve_model_ref
from modelyard.testing.peers import free_port


def test_sizes_and_flags() -> None:
    assert parse_size("512MB") == 512 * 10**6
    assert parse_size("2GiB") == 2 * 1024**3
    assert parse_size(1000) == 1000
    with pytest.raises(ServeConfigError):
        parse_size("lots")
    m = parse_model_flag("emb=oci:/x/layout:v1:feature-extraction")
    assert (m.name, m.ref, m.pipeline) == ("emb", "oci:/x/layout:v1", "feature-extraction")
    m = parse_model_flag("cls=./dir")
    assert (m.ref, m.pipeline) == ("./dir", None)
    with pytest.raises(ServeConfigError):
        parse_model_flag("no-equals-sign")


def test_toml_config(tmp_path: Path) -> None:
    path = tmp_path / "runner.toml"
    path.write_text(
        '[server]\nmemory_budget = "1GiB"\nhistory_window = "24h"\n\n'
        '[[models]]\nname = "minilm"\nref = "./minilm"\npipeline = "feature-extraction"\n'
        "preload = true\npinned = true\n[models.batching]\nmax_batch_size = 16\n"
    )
    config = load_config(path)
    assert config.memory_budget == 1024**3 and config.history_window_s == 86400
    (model,) = config.models
    assert model.ref == str(tmp_path / "minilm")  # relative to the config file
    assert model.batching.max_batch_size == 16 and model.pinned and model.preload


@pytest.mark.parametrize(
    "obj",
    [
        {"models": [{"name": "a", "ref": "x", "colour": "red"}]},
        {"models": [{"name": "a", "ref": "x", "batching": {"max_batch_size": 0}}]},
        {"models": [{"name": "a", "ref": "x"}, {"name": "a", "ref": "y"}]},
        {"models": [{"name": "a b", "ref": "x"}]},
        {"models": [{"name": "a", "ref": None, "pipeline": "feature-extraction"}]},
        {"server": {"memory_budget": "much"}},
    ],
)
def test_bad_configs_are_refused(obj: dict[str, Any]) -> None:
    with pytest.raises(ServeConfigError):
        config_from_dict(obj)


class Recorder:
    """A fake pipeline run: records batch shapes, returns each value doubled."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay

    def __call__(self, batch: list[Prepared]) -> list[Any]:
        import time

        self.batches.append([p.rows for p in batch])
        time.sleep(self.delay)
        return [p.value * 2 for p in batch]


async def _submit_all(batcher: Batcher, items: list[Prepared]) -> list[Any]:
    return await asyncio.gather(*(batcher.submit(p) for p in items), return_exceptions=True)


def test_batches_respect_rows_and_tokens() -> None:
    async def main() -> Recorder:
        rec = Recorder(delay=0.05)
        batcher = Batcher(
            "m", rec, BatchingConfig(max_batch_size=4, max_batch_tokens=100), Metrics()
        )
        first = asyncio.ensure_future(batcher.submit(Prepared(0, rows=1, tokens=10)))
        await asyncio.sleep(0.01)  # the first batch is running; the rest queue behind it
        items = [Prepared(i, rows=1, tokens=10) for i in range(1, 7)]
        items += [Prepared(7, rows=1, tokens=90), Prepared(8, rows=3, tokens=3)]
        results = await _submit_all(batcher, items)
        assert await first == 0
        assert results == [i * 2 for i in range(1, 9)]
        await batcher.close()
        return rec

    rec = asyncio.run(main())
    assert rec.batches[0] == [1]
    # 4 rows max; the 90-token item does not fit after 2 x 10 tokens; it and 3 rows do.
    assert rec.batches[1:] == [[1, 1, 1, 1], [1, 1], [1, 3]]


@pytest.mark.parametrize(("instances", "expected"), [(1, [10]), (2, [5, 5])])
def test_a_burst_from_one_loop_pass_is_one_batch(instances: int, expected: list[int]) -> None:
    """Requests queued in one pass of the event loop are offered to the instances together.

    Each handler releases the GIL before it queues its request, as the tokenizer does: when an
    instance was woken by the first request, it ran a batch of 1 ([1, 9]; [1, 1, 8] with two).
    """

    async def main() -> Recorder:
        rec = Recorder(delay=0.05)
        batcher = Batcher("m", rec, BatchingConfig(), Metrics(), instances=instances)

        async def handler(i: int) -> Any:
            time.sleep(0.002)  # releases the GIL, within the same pass of the loop
            return await batcher.submit(Prepared(i))

        assert await asyncio.gather(*(handler(i) for i in range(10))) == [i * 2 for i in range(10)]
        await batcher.close()
        return rec

    assert sorted(len(b) for b in asyncio.run(main()).batches) == expected


def test_split_by_length_pads_as_little_as_pays() -> None:
    import itertools

    def cost(lengths: list[int], runs: list[list[int]], run_cost: int) -> int:
        return sum(run_cost + len(r) * max(lengths[i] for i in r) for r in runs)

    assert split_by_length([17] * 16) == [list(range(16))]
    assert split_by_length([5, 100]) == [[0], [1]]
    assert split_by_length([40, 3, 41, 4], run_cost=12) == [[1, 3], [0, 2]]
    rng = random.Random(7)
    for _ in range(200):
        lengths = [rng.randint(1, 60) for _ in range(rng.randint(1, 7))]
        runs = split_by_length(lengths, run_cost=12)
        assert sorted(i for r in runs for i in r) == list(range(len(lengths)))
        # No split into contiguous groups of the sorted order does better.
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        best = min(
            cost(lengths, [order[a:b] for a, b in itertools.pairwise((0, *cuts, len(order)))], 12)
            for k in range(len(order))
            for cuts in itertools.combinations(range(1, len(order)), k)
        )
        assert cost(lengths, runs, 12) == best


def test_sequential_mode_runs_one_at_a_time() -> None:
    async def main() -> Recorder:
        rec = Recorder(delay=0.01)
        batcher = Batcher("m", rec, BatchingConfig(sequential=True), Metrics())
        assert await _submit_all(batcher, [Prepared(i) for i in range(5)]) == [0, 2, 4, 6, 8]
        await batcher.close()
        return rec

    assert all(len(b) == 1 for b in asyncio.run(main()).batches)


class Overlap:
    """A fake pipeline run that records how many batches ran at the same time."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, batch: list[Prepared]) -> list[Any]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.delay)
        with self.lock:
            self.running -= 1
        return [p.value * 2 for p in batch]


@pytest.mark.parametrize(("sequential", "expected"), [(False, 2), (True, 1)])
def test_instances_run_batches_at_once(sequential: bool, expected: int) -> None:
    async def main() -> tuple[Overlap, Recorder]:
        run = Overlap(delay=0.3)  # long enough for the second instance to start on a busy machine
        alone = Recorder()
        config = BatchingConfig(sequential=sequential, max_batch_size=32)
        batcher = Batcher("m", run, config, Metrics(), instances=2, run_alone=alone)
        assert await _submit_all(batcher, [Prepared(i) for i in range(8)]) == [
            i * 2 for i in range(8)
        ]
        if not sequential:
            assert await batcher.submit(Prepared(21)) == 42  # a lone request
        await batcher.close()
        return run, alone

    # Batched: the 8 queued requests are shared between the two free instances, not left to
    # one of them; sequential mode runs one request at a time whatever the instance count.
    # Only a batch with no other request in flight goes to `run_alone`.
    run, alone = asyncio.run(main())
    assert run.most == expected
    if not sequential:
        assert alone.batches[-1] == [1]
        assert sum(len(b) for b in alone.batches) < 9


def test_instances_default_per_core_for_builtin_batched_models() -> None:
    def model(**kw: Any) -> Any:
        entry = {"name": "a", "ref": "x", "pipeline": "feature-extraction", **kw}
        return config_from_dict({"models": [entry]}).models[0]

    cores = os.cpu_count() or 1
    assert model().instances == cores
    assert model().intra_op_threads == max(1, cores // max(2, cores))
    assert model(batching={"sequential": True}).instances == 1
    assert model(batching={"sequential": True}).intra_op_threads == max(1, cores // 2)
    assert model(batching={"concurrency": 3}, threads=2).instances == 3
    assert model(batching={"concurrency": 3}, threads=2).intra_op_threads == 2
    assert model(pipeline="pkg.mod:Cls", ref=None).instances == 1
    # A second session with every core for batches that run alone, when instances have fewer.
    assert model().lone_session_threads == (cores if cores > 1 else 0)
    assert model(lone_threads=0).lone_session_threads == 0
    assert model(threads=1).lone_session_threads == 0
    assert model(batching={"sequential": True}).lone_session_threads == 0
    with pytest.raises(ServeConfigError):
        model(lone_threads=-1)


def test_max_wait_gathers_a_batch() -> None:
    async def main() -> Recorder:
        rec = Recorder()
        batcher = Batcher("m", rec, BatchingConfig(max_wait_ms=200, max_batch_size=3), Metrics())
        tasks = []
        for i in range(3):
            tasks.append(asyncio.ensure_future(batcher.submit(Prepared(i))))
            await asyncio.sleep(0.02)
        assert await asyncio.gather(*tasks) == [0, 2, 4]
        await batcher.close()
        return rec

    assert asyncio.run(main()).batches == [[1, 1, 1]]


def test_overload_timeout_and_errors_are_typed() -> None:
    async def main() -> None:
        batcher = Batcher(
            "m",
            Recorder(delay=0.3),
            BatchingConfig(max_queue=1, timeout_s=0.1, sequential=True),
            Metrics(),
        )
        results = await _submit_all(batcher, [Prepared(i) for i in range(4)])
        kinds = sorted(type(r).__name__ for r in results)
        assert "Overloaded" in kinds and "InferenceTimeout" in kinds
        assert all(isinstance(r, Overloaded | InferenceTimeout) for r in results)

        def boom(batch: list[Prepared]) -> list[Any]:
            raise ValueError("bad batch")

        failing = Batcher("f", boom, BatchingConfig(), Metrics())
        with pytest.raises(ValueError, match="bad batch"):
            await failing.submit(Prepared(1))
        await batcher.close()
        await failing.close()

    asyncio.run(main())


def test_close_finishes_queued_requests() -> None:
    async def main() -> None:
        batcher = Batcher("m", Recorder(delay=0.02), BatchingConfig(sequential=True), Metrics())
        pending = [asyncio.ensure_future(batcher.submit(Prepared(i))) for i in range(4)]
        await asyncio.sleep(0)
        await batcher.close()
        assert await asyncio.wait_for(asyncio.gather(*pending), 1) == [0, 2, 4, 6]

    asyncio.run(main())


def test_metrics_text_format() -> None:
    m = Metrics()
    m.latency.observe(0.003, model='we"ird')
    m.evictions.inc(model="a")
    text = m.render()
    assert 'modelyard_request_duration_seconds_bucket{model="we\\"ird",le="0.0025"} 0' in text
    assert 'modelyard_request_duration_seconds_bucket{model="we\\"ird",le="0.005"} 1' in text
    assert 'modelyard_request_duration_seconds_count{model="we\\"ird"} 1' in text
    assert "# TYPE modelyard_model_evictions_total counter" in text


def test_registry_refs_are_told_from_paths() -> None:
    assert is_registry_ref("localhost:5000/org/m:v1")
    assert is_registry_ref("ghcr.io/org/m@sha256:" + "0" * 64)
    assert not is_registry_ref("models/minilm")
    assert not is_registry_ref("./a.b/c")


def test_resolve_local_and_missing(tmp_path: Path) -> None:
    assert resolve_model_ref(str(tmp_path), tmp_path / "cache") == tmp_path.resolve()
    with pytest.raises(ModelRefError, match="does not exist"):
        resolve_model_ref(str(tmp_path / "nope"), tmp_path / "cache")
    with pytest.raises(ModelRefError, match="cannot fetch"):
        resolve_model_ref(f"localhost:{free_port()}/org/model:v1", tmp_path / "cache")
    with pytest.raises(ModelRefError, match="cannot open OCI layout"):
        resolve_model_ref(f"oci:{tmp_path}:v1", tmp_path / "cache")


def test_resolve_oci_layout_packed_by_modelyard(tiny: dict[str, Path], tmp_path: Path) -> None:
    from modelyard.pack.packer import PackOptions, pack

    layout = tmp_path / "layout"
    # A tiny threshold puts the model file in its own layer, compressed.
    pack(tiny["cls"], "v1", layout, PackOptions(threshold=1024, compression="gzip"))
    cache = tmp_path / "cache"
    path = resolve_model_ref(f"oci:{layout}:v1", cache)
    assert path.parent.parent == cache
    for name in ("model.onnx", "tokenizer.json", "modelyard.json", "config.json"):
        assert (path / name).read_bytes() == (tiny["cls"] / name).read_bytes(), name
    assert json.loads((path / "modelyard.json").read_text())["task"] == "text-classification"
    # Cached: the second resolution reuses the extracted directory.
    assert resolve_model_ref(f"oci:{layout}:v1", cache) == path
    with pytest.raises(ModelRefError, match="not found"):
        resolve_model_ref(f"oci:{layout}:v2", cache)


def test_history_counts_within_the_window_and_keeps_sizes(tmp_path: Path) -> None:
    from modelyard.serve.history import TrafficHistory

    now = 1_700_000_000.0
    history = TrafficHistory(tmp_path / "h.sqlite")
    history.record("old", 50, now=now - 3 * 3600)
    history.record("a", 2, now=now - 60)
    history.record("b", 1, now=now - 30)
    history.flush()
    history.record("b", 3, now=now)  # same minute as a flushed count: added up
    history.set_size("a", 1234)
    history.close()

    reopened = TrafficHistory(tmp_path / "h.sqlite")
    assert reopened.hottest(3600, now=now) == [("b", 4), ("a", 2)]
    assert reopened.hottest(4 * 3600, now=now)[0] == ("old", 50)
    assert reopened.sizes() == {"a": 1234}
    reopened.close()


class _LateSession(Pipeline):
    """Serves at once; `after_ready` then holds 64 MiB more, like a second session."""

    def __init__(self) -> None:
        self.extra: Any = None
        self.started = threading.Event()
        self.release = threading.Event()

    def prepare(self, payload: Any) -> Prepared:
        return Prepared(payload)

    def run(self, batch: list[Prepared]) -> list[Any]:
        return [p.value for p in batch]

    def after_ready(self) -> None:
        import numpy as np

        self.started.set()
        self.release.wait(10)
        self.extra = np.ones(64 * 1024 * 1024 // 8)


def test_after_ready_work_does_not_hold_up_serving_and_its_memory_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = _LateSession()
    monkeypatch.setattr(models, "build_pipeline", lambda config, cache: (pipeline, 0))

    async def main() -> tuple[int, int]:
        config = ServeConfig(models=(ModelConfig(name="m", ref=None, pipeline="x:Y"),))
        manager = models.ModelManager(config, Metrics(), None, tmp_path)
        slot = await manager.load("m")
        assert slot.state is models.State.READY
        await asyncio.to_thread(pipeline.started.wait, 10)
        assert slot.batcher is not None
        assert await slot.batcher.submit(Prepared("served meanwhile")) == "served meanwhile"
        before = slot.resident_bytes
        pipeline.release.set()
        for _ in range(200):
            if slot.resident_bytes != before:
                break
            await asyncio.sleep(0.05)
        await manager.close()
        return before, slot.resident_bytes

    before, after = asyncio.run(main())
    assert after - before >= 60 * 1024 * 1024
