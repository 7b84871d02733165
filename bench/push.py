"""`modelyard push` vs `skopeo copy` of the same single-layer image into the same registries.

Builds an OCI layout holding one uncompressed layer of SIZE MiB of incompressible bytes, then
pushes it, each time into a fresh registry (so nothing is skipped), with:

- `modelyard push LAYOUT 127.0.0.1:PORT/bench/model:v1`
- `skopeo copy oci:LAYOUT:v1 docker://127.0.0.1:PORT/bench/model:v1`

into Debian's docker-registry and, unless --no-ours, into `modelyard registry serve`.
Prints MB/s and the ratio to skopeo into docker-registry (the issue's baseline).

    python bench/push.py [--size-mib 1024] [--no-ours] [--work DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from modelyard.oci import mediatypes as mt
from modelyard.oci.compress import LayerStream
from modelyard.oci.descriptor import Descriptor
from modelyard.oci.layout import Layout
from modelyard.oci.manifest import ImageConfig, ImageManifest
from modelyard.oci.tar import TarWriter
from modelyard.testing.peers import docker_registry, modelyard_registry


def build_layout(root: Path, size: int) -> Path:
    layout = Layout.create(root)
    tmp = layout.temp_blob()
    block = os.urandom(64 << 20)
    with open(tmp, "wb") as f:
        stream = LayerStream(f.write, "none")
        tar = TarWriter(stream.write)
        tar.begin_file("model.bin", size)
        left, i = size, 0
        while left > 0:
            piece = block[: min(len(block), left)]
            # Vary each block so that no two are alike.
            stream_piece = i.to_bytes(8, "little") + piece[8:]
            tar.write(stream_piece)
            left -= len(piece)
            i += 1
        tar.end_file()
        tar.close()
        digests = stream.close()
        f.flush()
        os.fsync(f.fileno())
    layout.commit_blob(tmp, digests.digest)
    config = layout.write_blob(ImageConfig((digests.diff_id,)).to_bytes())
    manifest = ImageManifest(
        Descriptor(mt.OCI_CONFIG, config.digest, config.size),
        (Descriptor(mt.OCI_LAYER, digests.digest, digests.size),),
    ).to_bytes()
    m = layout.write_blob(manifest)
    layout.set_tag("v1", Descriptor(mt.OCI_MANIFEST, m.digest, m.size))
    return root


def distribution(work: Path) -> contextlib.AbstractContextManager[str]:
    return docker_registry(work, access_log=False)


@contextlib.contextmanager
def ours(work: Path) -> Iterator[str]:
    with modelyard_registry(work / "root") as (addr, _):
        yield addr


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--no-ours", action="store_true", help="skip modelyard's registry")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per pair; the best is shown (noisy machine)"
    )
    args = parser.parse_args()
    for tool in ("skopeo", "docker-registry"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is required")
    work = Path(tempfile.mkdtemp(prefix="bench-push-", dir=args.work))
    size = args.size_mib << 20
    env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache")}
    try:
        print(f"building a {args.size_mib} MiB single-layer layout...", file=sys.stderr)
        layout = build_layout(work / "layout", size)
        servers: list[tuple[str, Callable[[Path], contextlib.AbstractContextManager[str]]]] = [
            ("docker-registry", distribution)
        ]
        if not args.no_ours:
            servers.append(("modelyard registry", ours))
        rows: list[tuple[str, str, float]] = []
        for server_name, start in servers:
            for client_name in ("skopeo copy", "modelyard push"):
                best = 0.0
                for run in range(args.repeat):
                    tag = f"{server_name}-{client_name}-{run}".replace(" ", "_")
                    try:
                        with start(work / tag) as addr:
                            ref = f"{addr}/bench/model:v1"
                            if client_name == "skopeo copy":
                                cmd = ["skopeo", "copy", "--dest-tls-verify=false",
                                       f"oci:{layout}:v1", f"docker://{ref}"]  # fmt: skip
                            else:
                                cmd = [sys.executable, "-m", "modelyard", "push", "-q",
                                       str(layout), ref]  # fmt: skip
                            seconds = timed(cmd, env)
                    finally:
                        shutil.rmtree(work / tag, ignore_errors=True)
                    best = max(best, size / seconds / 1e6)
                rows.append((client_name, server_name, best))
        base = rows[0][2]
        print(f"\npush of {args.size_mib} MiB (one uncompressed layer), fresh registry each time")
        print(f"{'client':<16} {'registry':<20} {'MB/s':>8} {'vs skopeo->docker-registry':>28}")
        for client_name, server_name, mbps in rows:
            print(f"{client_name:<16} {server_name:<20} {mbps:8.0f} {mbps / base:27.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
