"""The README's main command on the embedded default: pack, registry, push, optimize, serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from modelyard.oci.layout import Layout
from modelyard.testing.peers import free_port, run


def test_demo_runs_end_to_end_on_the_default_store(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    addr = f"127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard",
            "demo",
            "--check",
            "--addr",
            addr,
            "--runner-port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"COPY --from=localhost:{addr.split(':')[1]}/demo/all-minilm-l6-v2:v1" in proc.stdout
    assert "384-dim embeddings" in proc.stdout
    # Everything landed under the default data dir, and the layout is a valid image.
    layout = Layout.open(tmp_path / "data" / "modelyard" / "layouts" / "demo_all-minilm-l6-v2")
    assert {"v1", "int8"} <= set(layout.tags())
    info = json.loads(run(["skopeo", "inspect", f"oci:{layout.root}:v1"]).stdout)
    assert len(info["Layers"]) == 2  # model.safetensors alone, the small files together
    assert (tmp_path / "data" / "modelyard" / "registry").is_dir()
