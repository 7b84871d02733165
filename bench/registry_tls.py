"""Our registry against Debian's docker-registry (CNCF distribution 2.8), both over HTTPS with
the same throwaway CA, side by side in one run on the same data:

  - blob GET throughput (MB/s) of one --size MiB blob with curl --cacert (best of 3),
  - a push of an image with one uncompressed layer of --size MiB with skopeo --dest-cert-dir,
  - the same push with `modelyard push --ca-cert`.

Plain-HTTP figures for the same operations are in bench/registry.py.
Usage: python bench/registry_tls.py [--size 1024] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from registry import make_data, make_layout  # bench/registry.py: same data as there

from modelyard.testing import peers
from modelyard.testing.certs import CertAuthority, make_ca, modelyard_registry_tls


def blob_get(addr: str, ca: CertAuthority, digest: str, size: int) -> float:
    """MB/s of the best of three GETs (the first also warms the page cache)."""
    best = 0.0
    for _ in range(3):
        out = peers.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{speed_download}", "--cacert",
             str(ca.ca_cert), f"https://{addr}/v2/bench/blob/blobs/{digest}"]
        ).stdout  # fmt: skip
        best = max(best, float(out) / 1e6)
    return best


def timed_mbps(cmd: list[str], size: int) -> float:
    start = time.monotonic()
    peers.run(cmd)
    return size / (time.monotonic() - start) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="blob size in MiB")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    for tool in ("curl", "skopeo", "docker-registry"):
        peers.require(tool)
    size = args.size << 20
    work = Path(tempfile.mkdtemp(prefix="modelyard-bench-tls-"))
    try:
        ca = make_ca(work / "pki")
        certs = work / "certs"
        certs.mkdir()
        shutil.copy(ca.ca_cert, certs / "ca.crt")
        blob, digest = make_data(work, size)
        layout = make_layout(work, blob, digest, size)
        rows: dict[str, dict[str, float]] = {}
        with (
            modelyard_registry_tls(work / "ours", ca) as (ours, _),
            peers.docker_registry(
                work / "dist", access_log=False, tls=(ca.server_cert, ca.server_key, ca.ca_cert)
            ) as dist,
        ):
            for label, addr in (("modelyard", ours), ("docker-registry", dist)):
                row = rows.setdefault(label, {})
                skopeo = [
                    "skopeo", "copy", "--preserve-digests", "--dest-cert-dir", str(certs),
                    f"oci:{layout}:v1", f"docker://{addr}/bench/blob:v1",
                ]  # fmt: skip
                row["skopeo push MB/s"] = timed_mbps(skopeo, size)
                row["blob GET MB/s"] = blob_get(addr, ca, digest, size)
                ours_push = [
                    sys.executable, "-m", "modelyard", "push", str(layout),
                    f"{addr}/bench/ours:v1", "--ca-cert", str(ca.ca_cert), "-q",
                ]  # fmt: skip
                row["modelyard push MB/s"] = timed_mbps(ours_push, size)
        metrics = list(rows["modelyard"])
        print(f"\nHTTPS, {args.size} MiB, 2 cores shared; ratio = modelyard / docker-registry")
        print(f"{'metric':<22}{'modelyard':>12}{'docker-registry':>17}{'ratio':>8}")
        for metric in metrics:
            a, b = rows["modelyard"][metric], rows["docker-registry"][metric]
            print(f"{metric:<22}{a:>12.0f}{b:>17.0f}{a / b:>8.2f}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
