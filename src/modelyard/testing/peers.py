"""Real peer tools for tests and benchmarks: Debian's docker-registry, skopeo, buildah, umoci.

A missing tool is an error, never a skip: `scripts/test` installs them.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

BUILDAH = ["buildah", "--storage-driver", "vfs"]


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is not installed; run ./scripts/test, which installs it")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def docker_registry(root: Path, htpasswd: Path | None = None) -> Iterator[str]:
    """Run Debian's docker-registry (CNCF distribution) on a free port; yield `host:port`."""
    binary = require("docker-registry")
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    auth = ""
    if htpasswd:
        auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n"
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}"
    )
    log = open(root / "registry.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def run(cmd: list[str], timeout: float = 600, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise with its output, so a test failure says why."""
    require(cmd[0])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc  # type: ignore[no-any-return]


def buildah_env(root: Path) -> list[str]:
    """buildah arguments that keep its storage under `root` (vfs; works as root here)."""
    return [
        *BUILDAH,
        "--root",
        str(root / "storage"),
        "--runroot",
        str(root / "run"),
    ]
