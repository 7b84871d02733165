"""Real peer tools and servers for tests and benchmarks: Debian's docker-registry, our own
`modelyard registry serve`, skopeo, buildah, umoci.

A missing tool is an error, never a skip: `scripts/test` installs them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
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


def wait_http(
    url: str,
    timeout: float = 20.0,
    proc: subprocess.Popen[bytes] | None = None,
    verify: bool | str | Path = True,
) -> None:
    """Wait until `url` answers anything over HTTP; fail at once if `proc` (its server) exits.
    `verify`: False, or a CA file for https."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server of {url} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0, verify=str(verify) if isinstance(verify, Path) else verify)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def docker_registry(
    root: Path,
    htpasswd: Path | None = None,
    *,
    access_log: bool = True,
    tls: tuple[Path, Path, Path] | None = None,
) -> Iterator[str]:
    """Run Debian's docker-registry (CNCF distribution) on a free port; yield `host:port`.

    Its storage is `root/data`, its log (with the access log unless `access_log` is false,
    as benchmarks want) `root/registry.log`. `tls` = (certificate, key, CA certificate) serves
    HTTPS with that pair, waiting for readiness with the CA.
    """
    binary = require("docker-registry")
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    auth = ""
    if htpasswd:
        auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n"
    quiet = "" if access_log else "  accesslog:\n    disabled: true\n"
    http_tls = f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else ""
    config = root / "config.yml"
    config.write_text(
        f"version: 0.1\nlog:\n  level: error\n{quiet}storage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{http_tls}{auth}"
    )
    with open(root / "registry.log", "wb") as log:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
        try:
            scheme = "https" if tls else "http"
            wait_http(f"{scheme}://127.0.0.1:{port}/v2/", proc=proc, verify=tls[2] if tls else True)
            yield f"127.0.0.1:{port}"
        finally:
            stop(proc)


def start_modelyard_registry(
    root: Path,
    *args: str,
    addr: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start `python -m modelyard registry serve --root ROOT --addr ADDR ARGS` and wait for it.

    ADDR is a free port on 127.0.0.1 unless given (a restart reuses its address). Its output
    goes to `ROOT.log`, beside the root (not in it: tests look at every file of the root).
    Returns `host:port` and the process; stop it with `stop`.
    """
    addr = addr or f"127.0.0.1:{free_port()}"
    log_path = root.parent / f"{root.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelyard", "registry", "serve",
             "--root", str(root), "--addr", addr, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
        )  # fmt: skip
    try:
        wait_http(f"http://{addr}/v2/", timeout, proc)
    except Exception as exc:
        stop(proc)
        tail = log_path.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"modelyard registry serve did not start:\n{tail}") from exc
    except BaseException:
        stop(proc)
        raise
    return addr, proc


@contextlib.contextmanager
def modelyard_registry(
    root: Path, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`start_modelyard_registry` as a context: yield `host:port` and the process, then stop it."""
    addr, proc = start_modelyard_registry(root, *args, env=env)
    try:
        yield addr, proc
    finally:
        stop(proc)


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


def skopeo_push(layout: Path, tag: str, ref: str, *extra: str) -> None:
    """`skopeo copy --all --preserve-digests` of the image `tag` of an OCI layout to
    `docker://REF` over plain HTTP: the registry gets our blobs byte for byte."""
    run(
        ["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false", *extra,
         f"oci:{layout}:{tag}", f"docker://{ref}"]
    )  # fmt: skip


def buildah_env(root: Path) -> list[str]:
    """buildah arguments that keep its storage under `root` (vfs; works as root here)."""
    return [
        *BUILDAH,
        "--root",
        str(root / "storage"),
        "--runroot",
        str(root / "run"),
    ]


def buildah_bud(root: Path, containerfile: str, tag: str, *extra: str) -> list[str]:
    """`buildah bud` of a context holding only `containerfile` (written to `root/ctx`) as
    `tag`, with chroot isolation and registries over plain HTTP. Returns the buildah arguments
    (`buildah_env(root)`) for further commands on the same storage."""
    ctx = root / "ctx"
    ctx.mkdir(parents=True)
    (ctx / "Containerfile").write_text(containerfile)
    buildah = buildah_env(root)
    bud = ["bud", "--isolation", "chroot", "--tls-verify=false", *extra, "-t", tag, str(ctx)]
    run([*buildah, *bud])
    return buildah


def write_htpasswd(path: Path, user: str, password: str) -> Path:
    """An htpasswd file with one bcrypt entry, as `htpasswd -B` writes it."""
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    path.write_text(f"{user}:{hashed}\n")
    return path


def write_docker_config(user: str, password: str, registry: str) -> None:
    """A `config.json` as `docker login` writes it, in $DOCKER_CONFIG."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    path.write_text(json.dumps({"auths": {registry: {"auth": auth}}}))
