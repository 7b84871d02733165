"""Fixtures for the optimize tests: tiny real models and a torch-free runner venv."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import modelyard
from modelyard.testing import make_tiny_model

SRC = Path(modelyard.__file__).resolve().parent.parent
RUNNER_PACKAGES = ["onnxruntime", "tokenizers", "numpy"]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {
        "bert-cls": make_tiny_model(root / "bert-cls", "bert", "text-classification", seed=1),
        "xlmr-cls": make_tiny_model(
            root / "xlmr-cls", "xlm-roberta", "text-classification", num_labels=4, seed=2
        ),
        "bert-emb": make_tiny_model(root / "bert-emb", "bert", "feature-extraction", seed=3),
    }


@pytest.fixture(scope="session")
def runner_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with only what the slim runner needs: onnxruntime, tokenizers, numpy.

    modelyard's own source is reached through PYTHONPATH (see `run_in_runner_venv`): only
    the pure `modelyard.bundle` module is imported there, and torch is not installed.
    """
    venv = tmp_path_factory.mktemp("runner-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    proc = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *RUNNER_PACKAGES,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cannot install {RUNNER_PACKAGES} in a venv:\n{proc.stderr}")
    return python


RunInVenv = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="session")
def run_in_runner_venv(runner_python: Path) -> RunInVenv:
    """Run `python ARGS...` in the runner venv, with only modelyard's source on the path."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PYTHONPATH"] = str(SRC)
        return subprocess.run(
            [str(runner_python), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )

    return run
