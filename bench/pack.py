"""Pack a model directory with modelyard vs buildah, on the same data, in one run.

    python bench/pack.py [--size-gib 2] [--files 4] [--work DIR] [--skip-buildah]

modelyard: `pack` (default mode) into an OCI layout. buildah: `bud` of `FROM scratch` +
`COPY model/ /` then `push oci:DIR`, vfs storage, chroot isolation (as root). The reference
rate is hashlib.sha256 over the same bytes with a page-aligned buffer: the single-core limit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path

from modelyard.oci.digest import iter_chunks
from modelyard.pack import PackOptions, pack
from modelyard.testing.files import MiB, make_model
from modelyard.testing.peers import buildah_env


def sha256_rate(model: Path) -> float:
    total = 0
    start = time.perf_counter()
    for p in sorted(model.iterdir()):
        h = hashlib.sha256()
        with open(p, "rb", buffering=0) as f:
            for chunk in iter_chunks(f):
                h.update(chunk)
                total += len(chunk)
    return total / (time.perf_counter() - start)


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--work", type=Path, default=Path("bench/_work/pack"))
    ap.add_argument("--skip-buildah", action="store_true")
    ap.add_argument("--repeat", type=int, default=2, help="modelyard runs (best is reported)")
    args = ap.parse_args()

    work = args.work
    model = work / "model"
    size = int(args.size_gib * 1024 * MiB)
    per_file = size // args.files // 4 * 4
    if not model.exists() or sum(p.stat().st_size for p in model.iterdir()) < size:
        shutil.rmtree(work, ignore_errors=True)
        print(f"generating {args.files} x {per_file / MiB:.0f} MiB of float32 ...", flush=True)
        make_model(model, weights=args.files, weight_size=per_file)
    total = sum(p.stat().st_size for p in model.iterdir())
    sha = max(sha256_rate(model) for _ in range(2))

    rows: list[tuple[str, float]] = []
    best = {}
    for mode in ("auto", "none", "zstd"):
        if mode == "zstd" and total > 512 * MiB:
            continue  # zstd -3 runs near 300 MB/s: measured on request only
        times = []
        for _ in range(args.repeat):
            out = work / f"layout-{mode}"
            shutil.rmtree(out, ignore_errors=True)
            times.append(
                timed(
                    lambda out=out, mode=mode: pack(model, "v1", out, PackOptions(compression=mode))
                )
            )
        best[mode] = min(times)
        rows.append((f"modelyard pack ({mode})", best[mode]))

    buildah_total = None
    if not args.skip_buildah:
        b = buildah_env(work / "buildah")
        ctx = work
        (ctx / "Containerfile").write_text("FROM scratch\nCOPY model/ /\n")
        shutil.rmtree(work / "buildah-oci", ignore_errors=True)
        bud = timed(
            lambda: subprocess.run(
                [
                    *b,
                    "bud",
                    "--isolation",
                    "chroot",
                    "-t",
                    "localhost/model:bench",
                    "-f",
                    str(ctx / "Containerfile"),
                    str(ctx),
                ],
                check=True,
                capture_output=True,
            )
        )
        push = timed(
            lambda: subprocess.run(
                [*b, "push", "localhost/model:bench", f"oci:{work / 'buildah-oci'}:v1"],
                check=True,
                capture_output=True,
            )
        )
        subprocess.run([*b, "rmi", "-a", "-f"], capture_output=True)
        rows.append(("buildah bud", bud))
        rows.append(("buildah push oci:", push))
        buildah_total = bud + push
        rows.append(("buildah bud + push", buildah_total))

    print(f"\n{total / MiB:.0f} MiB in {args.files} files of float32; sha256 {sha / 1e6:.0f} MB/s")
    print(f"{'tool':<28}{'seconds':>9}{'MB/s':>9}{'vs sha256':>11}")
    for name, secs in rows:
        rate = total / secs
        print(f"{name:<28}{secs:>9.2f}{rate / 1e6:>9.0f}{rate / sha:>10.0%}")
    if buildah_total:
        print(f"\nmodelyard (auto) is {buildah_total / best['auto']:.1f}x faster than buildah")
    (work / "result.json").write_text(json.dumps({"bytes": total, "sha256_Bps": sha, "rows": rows}))


if __name__ == "__main__":
    main()
