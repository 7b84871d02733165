"""Our registry against Debian's docker-registry (CNCF distribution 2.8), side by side.

Same machine, same data, one run:
  - blob GET throughput (MB/s) with 1 and 4 concurrent clients (curl),
  - 1 MiB range GET latency (median over keep-alive requests),
  - manifest GET requests/s at 32 connections (wrk),
  - a push of an image with one uncompressed layer of --size MiB with skopeo,
  - the server's own ingest rate: one PUT of the whole blob (sendfile on the client),
  - the same with `modelyard push` into ours, when the client is installed.

Pushes are noisy on a shared machine: each is repeated --repeat times into fresh registries,
ours and distribution alternating, and reported as the best run with the range of all runs,
plus the CPU seconds the server and the client spent (a steadier signal than wall time).

Usage: python bench/registry.py [--size 1024] [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from modelyard.testing import peers

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = f"{OCI_MANIFEST}, application/vnd.oci.image.index.v1+json"


def make_data(work: Path, size: int) -> tuple[Path, str]:
    path = work / "blob.bin"
    h = hashlib.sha256()
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(size >> 20):
            # Vary each MiB so that no layer of compression or dedup flatters anyone.
            block = i.to_bytes(8, "little") + chunk[8:]
            f.write(block)
            h.update(block)
    return path, "sha256:" + h.hexdigest()


def make_layout(work: Path, blob: Path, digest: str, size: int) -> Path:
    layout = work / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    os.link(blob, blobs / digest.split(":")[1])
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [digest]}}
    ).encode()
    cd = "sha256:" + hashlib.sha256(config).hexdigest()
    (blobs / cd.split(":")[1]).write_bytes(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": cd,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest,
                    "size": size,
                }
            ],
        }
    ).encode()
    md = "sha256:" + hashlib.sha256(manifest).hexdigest()
    (blobs / md.split(":")[1]).write_bytes(manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": md,
                        "size": len(manifest),
                        "annotations": {"org.opencontainers.image.ref.name": "v1"},
                    }
                ],
            }
        )
    )
    return layout


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def blob_get(addr: str, digest: str, size: int, clients: int) -> float:
    url = f"http://{addr}/v2/bench/blob/blobs/{digest}"
    t = time.perf_counter()
    procs = [subprocess.Popen(["curl", "-sf", "-o", "/dev/null", url]) for _ in range(clients)]
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"curl failed on {url}")
    return clients * size / (time.perf_counter() - t) / 1e6


def range_latency(addr: str, digest: str, size: int, n: int = 60) -> float:
    url = f"http://{addr}/v2/bench/blob/blobs/{digest}"
    rng = random.Random(0)
    times = []
    with httpx.Client() as c:
        for _ in range(n):
            start = rng.randrange(0, size - (1 << 20))
            t = time.perf_counter()
            r = c.get(url, headers={"Range": f"bytes={start}-{start + (1 << 20) - 1}"})
            times.append(time.perf_counter() - t)
            assert r.status_code == 206 and len(r.content) == 1 << 20
    return statistics.median(times) * 1000


def manifest_rps(addr: str, seconds: int = 8) -> float:
    url = f"http://{addr}/v2/bench/image/manifests/v1"
    out = peers.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "-H", f"Accept: {ACCEPT}", url]).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return float(
        next(line for line in out.splitlines() if line.startswith("Requests/sec")).split()[1]
    )


def raw_upload(addr: str, blob: Path, digest: str, size: int) -> float:
    """POST for a session, then one PUT of the whole blob sent with sendfile: what the
    server itself can ingest (hash, write, sync), without a client's own hashing."""
    r = httpx.post(f"http://{addr}/v2/bench/raw/blobs/uploads/")
    location = urlsplit(r.headers["Location"])
    sep = "&" if location.query else "?"
    target = f"{location.path}{'?' + location.query if location.query else ''}{sep}digest={digest}"
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock, open(blob, "rb") as f:
        t = time.perf_counter()
        head = (
            f"PUT {target} HTTP/1.1\r\nHost: {addr}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
        )
        sock.sendall(head.encode())
        sock.sendfile(f)
        status = sock.recv(4096).split(b"\r\n")[0]
        dt = time.perf_counter() - t
    if b" 201 " not in status:
        raise RuntimeError(f"raw upload to {addr} failed: {status!r}")
    return size / dt / 1e6


def skopeo_push(layout: Path, addr: str, repo: str) -> float:
    return timed(lambda: peers.skopeo_push(layout, "v1", f"{addr}/{repo}:v1"))


def modelyard_push(layout: Path, addr: str, repo: str, cache: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "modelyard", "push", "-q", str(layout), f"{addr}/{repo}:v1"],
        check=True,
        capture_output=True,
        # A fresh blob-location record: nothing is mounted from an earlier run.
        env={**os.environ, "XDG_CACHE_HOME": str(cache)},
    )


@dataclass
class PushRun:
    seconds: float
    server_cpu: float
    client_cpu: float


def _process_tree(marker: str) -> list[int]:
    """Processes whose command line holds `marker`, with their children (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry))
    return found


def _cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def measured_push(push: Callable[[], object], server_marker: str) -> PushRun:
    """Wall time of `push` (a subprocess), with the CPU time of the server and the client."""
    pids = _process_tree(server_marker)
    server0 = _cpu_seconds(pids)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = timed(push)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return PushRun(seconds, _cpu_seconds(pids) - server0, client)


def push_runs(work: Path, layout: Path, repeat: int) -> dict[str, list[PushRun]]:
    """skopeo into each registry and `modelyard push` into ours, each in a fresh registry,
    alternating, `repeat` times."""
    runs: dict[str, list[PushRun]] = {"skopeo ours": [], "skopeo distribution": [], "modelyard": []}
    with_client = has_modelyard_push()
    for i in range(repeat):
        for label in runs:
            if label == "modelyard" and not with_client:
                continue
            root = work / f"push-{i}-{label.replace(' ', '-')}"
            with contextlib.ExitStack() as stack:
                if label == "skopeo distribution":
                    addr = stack.enter_context(peers.docker_registry(root, access_log=False))
                    marker = str(root / "config.yml")
                else:
                    addr, _ = stack.enter_context(peers.modelyard_registry(root / "root"))
                    marker = str(root / "root")
                if label == "modelyard":
                    push = partial(modelyard_push, layout, addr, "b/m", root / "cache")
                else:
                    push = partial(skopeo_push, layout, addr, "b/m")
                run = measured_push(push, marker)
                runs[label].append(run)
            shutil.rmtree(root, ignore_errors=True)
    return runs


def has_modelyard_push() -> bool:
    return (
        subprocess.run(
            [sys.executable, "-m", "modelyard", "push", "--help"], capture_output=True
        ).returncode
        == 0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="blob size in MiB")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each push (the best is in the table)"
    )
    args = parser.parse_args()
    size = args.size << 20
    for tool in ("curl", "wrk", "skopeo"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install {tool})")
    work = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    servers = contextlib.ExitStack()
    try:
        blob, digest = make_data(work, size)
        layout = make_layout(work, blob, digest, size)
        ours, _ = servers.enter_context(peers.modelyard_registry(work / "ours"))
        theirs = servers.enter_context(
            peers.docker_registry(work / "distribution", access_log=False)
        )
        rows: list[tuple[str, float, float, str]] = []
        results: dict[str, dict[str, float]] = {}
        for label, addr in (("ours", ours), ("distribution", theirs)):
            r: dict[str, float] = {}
            # Seed: the blob in bench/blob via skopeo's push, the manifest in bench/image.
            skopeo_push(layout, addr, "bench/blob")
            r["raw"] = raw_upload(addr, blob, digest, size)
            peers.skopeo_push(layout, "v1", f"{addr}/bench/image:v1")
            blob_get(addr, digest, size, 1)  # warm the page cache
            r["get1"] = max(blob_get(addr, digest, size, 1) for _ in range(2))
            r["get4"] = blob_get(addr, digest, size, 4)
            r["range"] = range_latency(addr, digest, size)
            r["rps"] = manifest_rps(addr)
            results[label] = r
        servers.close()  # the pushes run against fresh registries, one at a time
        runs = push_runs(work, layout, args.repeat)

        def best(label: str) -> float:
            return size / min(run.seconds for run in runs[label]) / 1e6

        o, d = results["ours"], results["distribution"]
        o["push"], d["push"] = best("skopeo ours"), best("skopeo distribution")
        rows = [
            (f"blob GET {args.size} MiB, 1 client (MB/s)", o["get1"], d["get1"], "higher"),
            (f"blob GET {args.size} MiB, 4 clients (MB/s)", o["get4"], d["get4"], "higher"),
            ("1 MiB range GET, median (ms)", o["range"], d["range"], "lower"),
            ("manifest GET, 32 connections (req/s)", o["rps"], d["rps"], "higher"),
            (f"skopeo push {args.size} MiB (MB/s)", o["push"], d["push"], "higher"),
            (f"server ingest, one PUT of {args.size} MiB (MB/s)", o["raw"], d["raw"], "higher"),
        ]
        if runs["modelyard"]:
            rows.append(
                (
                    f"modelyard push {args.size} MiB into ours vs skopeo into distribution (MB/s)",
                    best("modelyard"),
                    d["push"],
                    "higher",
                )
            )
        else:
            print("modelyard push is not available: its row is skipped")
        width = max(len(r[0]) for r in rows)
        print(f"\n{'':{width}}  {'ours':>10}  {'distribution':>12}  {'ratio':>7}")
        for name, ov, dv, better in rows:
            ratio = ov / dv if better == "higher" else dv / ov
            print(f"{name:{width}}  {ov:10.1f}  {dv:12.1f}  {ratio:6.2f}x")
        print("(ratio > 1 means ours is better)")
        print(f"\npushes of {args.size} MiB, {args.repeat} runs each, fresh registries:")
        head = f"{'best MB/s':>9}  {'range MB/s':>11}  {'server CPU s':>12}  {'client CPU s':>12}"
        print(f"{'':28}  {head}")
        for label, label_runs in runs.items():
            if not label_runs:
                continue
            rates = sorted(size / run.seconds / 1e6 for run in label_runs)
            server_cpu = statistics.median(run.server_cpu for run in label_runs)
            client_cpu = statistics.median(run.client_cpu for run in label_runs)
            spread = f"{rates[0]:.0f}-{rates[-1]:.0f}"
            print(
                f"{label + ' push':28}  {rates[-1]:9.0f}  {spread:>11}  {server_cpu:12.2f}"
                f"  {client_cpu:12.2f}"
            )
        print("(CPU: medians; the client is skopeo or `modelyard push`, its start-up included)")
    finally:
        servers.close()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
