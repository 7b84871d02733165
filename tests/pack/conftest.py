from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.testing.files import make_model


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return make_model(tmp_path / "model")
