"""Time and blob bytes to get `config.json` out of a model image: lazy pull vs whole image.

    python bench/lazy.py [--size-gib 2] [--files 4] [--work DIR]

The image (N random float32 weight files + config.json + tokenizer.json) is packed with
`--format estargz` (after timing `pack` in both formats, best of two) and pushed with skopeo
to Debian's docker-registry. Then, each with an empty cache: `modelyard pull REF config.json`
vs `skopeo copy` of the whole image to an OCI layout (what any tool must do without file-level
access), and, for reference, `modelyard pull REF` of the whole image. Bytes are the blob
bytes the registry's access log says it served.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from modelyard.pack import PackOptions, pack
from modelyard.testing.files import MiB, make_model
from modelyard.testing.peers import docker_registry, run, skopeo_push

_ACCESS = re.compile(r'"GET /v2/\S+/blobs/sha256:[0-9a-f]{64} HTTP/[\d.]+" \d{3} (\d+)')


def served(log: Path, since: int) -> int:
    with open(log, "rb") as f:
        f.seek(since)
        return sum(int(m.group(1)) for m in _ACCESS.finditer(f.read().decode(errors="replace")))


def measure(log: Path, fn: Callable[[], object]) -> tuple[float, int]:
    mark = log.stat().st_size
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    time.sleep(0.2)  # let the registry finish its access log lines
    return seconds, served(log, mark)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--work", type=Path, default=Path("bench/_work/lazy"))
    args = ap.parse_args()

    work = args.work.resolve()
    model = work / "model"
    size = int(args.size_gib * 1024 * MiB)
    per_file = size // args.files // 4 * 4
    weights = sorted(model.glob("model-*.safetensors")) if model.exists() else []
    if len(weights) != args.files or any(p.stat().st_size != per_file for p in weights):
        shutil.rmtree(work, ignore_errors=True)
        print(f"generating {args.files} x {per_file / MiB:.0f} MiB of float32 ...", flush=True)
        make_model(model, weights=args.files, weight_size=per_file)
    for d in ("layout", "registry", "cache", "out", "out2", "out3", "skopeo", "full", "fullcache"):
        shutil.rmtree(work / d, ignore_errors=True)
    # Packing cost of the format, side by side (best of two runs each).
    pack_times: dict[str, float] = {}
    for fmt in ("tar", "estargz") * 2:
        print(f"packing ({fmt}) ...", flush=True)
        shutil.rmtree(work / "layout", ignore_errors=True)
        start = time.perf_counter()
        pack(model, "v1", work / "layout", PackOptions(format=fmt))
        pack_times[fmt] = min(pack_times.get(fmt, 1e9), time.perf_counter() - start)

    with docker_registry(work / "registry") as host:
        ref = f"{host}/bench/model:v1"
        print("pushing with skopeo ...", flush=True)
        skopeo_push(work / "layout", "v1", ref)
        log = work / "registry" / "registry.log"
        env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache")}
        full_env = {**os.environ, "XDG_CACHE_HOME": str(work / "fullcache")}
        my = [sys.executable, "-m", "modelyard", "pull", ref]
        steps: list[tuple[str, list[str], dict[str, str] | None]] = [
            ("modelyard pull REF config.json", [*my, "config.json", "-o", f"{work}/out"], env),
            ("  same again (from the cache)", [*my, "config.json", "-o", f"{work}/out2"], env),
            (
                "modelyard pull REF <1 weight file>",
                [*my, "model-00000.safetensors", "-o", f"{work}/out3"],
                env,
            ),
            (
                "skopeo copy (whole image)",
                [
                    "skopeo",
                    "copy",
                    "--src-tls-verify=false",
                    f"docker://{ref}",
                    f"oci:{work}/skopeo:v1",
                ],
                None,
            ),
            ("modelyard pull REF (whole image)", [*my, "-o", f"{work}/full", "-q"], full_env),
        ]
        rows = [(name, measure(log, lambda a=argv, e=e: run(a, env=e))) for name, argv, e in steps]  # type: ignore[misc]
    assert (work / "out" / "config.json").read_bytes() == (model / "config.json").read_bytes()
    lazy_s, lazy_b = rows[0][1]
    total = sum(p.stat().st_size for p in model.iterdir())
    print(
        f"\nimage: {total / MiB:.0f} MiB of model files ({args.files} weight files); "
        f"config.json is {(model / 'config.json').stat().st_size} bytes"
    )
    print(f"{'how':<38}{'seconds':>9}{'blob bytes':>15}{'time ratio':>12}{'bytes ratio':>13}")
    for name, (secs, nbytes) in rows:
        print(
            f"{name:<38}{secs:>9.2f}{nbytes:>15,}{secs / lazy_s:>11.1f}x"
            f"{nbytes / max(lazy_b, 1):>12,.0f}x"
        )
    print(f"\n{'pack format':<38}{'seconds':>9}{'MB/s':>9}")
    for fmt, secs in pack_times.items():
        print(f"{fmt:<38}{secs:>9.2f}{total / secs / 1e6:>9.0f}")
    print(f"estargz/tar pack time: {pack_times['estargz'] / pack_times['tar']:.2f}")
    skopeo_s, skopeo_b = rows[3][1]
    print(
        f"\nlazy pull of config.json: {skopeo_s / lazy_s:.0f}x faster and "
        f"{skopeo_b / max(lazy_b, 1):,.0f}x fewer bytes than skopeo copy of the whole image"
    )


if __name__ == "__main__":
    main()
