"""Fixtures for the optimize tests: tiny real models written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.testing import make_tiny_model


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {
        "bert-cls": make_tiny_model(root / "bert-cls", "bert", "text-classification", seed=1),
        "xlmr-cls": make_tiny_model(root / "xlmr-cls", "xlm-roberta", "text-classification",
                                    num_labels=4, seed=2),
        "bert-emb": make_tiny_model(root / "bert-emb", "bert", "feature-extraction", seed=3),
    }
