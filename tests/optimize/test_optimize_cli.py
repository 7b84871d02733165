"""`modelyard optimize` end to end on tiny real models: int8 bundles that run without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.bundle import BundleManifest
from modelyard.cli import main
from modelyard.errors import FidelityError
from modelyard.optimize.export import load_torch_model
from modelyard.optimize.fidelity import FidelityBar, compare, failures
from modelyard.optimize.inference import TorchModel, run_batched
from modelyard.optimize.pipeline import optimize
from modelyard.optimize.samples import SAMPLES
from modelyard.optimize.source import read_source
from modelyard.testing import make_tiny_model

RUN_BUNDLE = Path(__file__).with_name("run_bundle.py")
CASES = {
    "bert-cls": "text-classification",
    "xlmr-cls": "text-classification",
    "bert-emb": "feature-extraction",
}


@pytest.fixture(scope="module")
def int8_bundles(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    out: dict[str, Path] = {}
    for name, task in CASES.items():
        code = main(
            [
                "optimize",
                str(tiny_models[name]),
                "--task",
                task,
                "-o",
                str(root / name),
                "--no-latency",
            ]
        )
        assert code == 0
        out[name] = root / name
    return out


def _reference(model_dir: Path, task: str, sentences: list[str]) -> np.ndarray:
    source = read_source(model_dir, task)
    return run_batched(TorchModel(source, load_torch_model(source)), sentences)


@pytest.mark.parametrize("name", list(CASES))
def test_int8_bundle_runs_without_torch_and_meets_bar(
    name: str,
    tiny_models: dict[str, Path],
    int8_bundles: dict[str, Path],
    run_in_runner_venv: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    task = CASES[name]
    bundle = int8_bundles[name]
    manifest = BundleManifest.load(bundle)
    assert manifest.quantization is not None
    assert manifest.quantization["weight_type"] in ("QInt8", "QUInt8")
    assert manifest.fidelity is not None and manifest.fidelity["passes"] is True
    assert (bundle / "model.onnx").stat().st_size < (
        tiny_models[name] / "model.safetensors"
    ).stat().st_size

    sentences = [*SAMPLES[:20], "un deux trois " * 40]
    sentences_file = tmp_path / "sentences.json"
    sentences_file.write_text(json.dumps(sentences), encoding="utf-8")
    proc = run_in_runner_venv(str(RUN_BUNDLE), str(bundle), str(sentences_file))
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    assert result["heavy_modules"] == []  # neither torch nor transformers is even installed
    assert result["max_tokens"] == manifest.max_length  # long input truncated, not rejected

    candidate = np.array(result["outputs"])
    metrics = compare(task, _reference(tiny_models[name], task, sentences), candidate)
    assert failures(task, metrics, FidelityBar()) == []
    if task == "text-classification":
        assert result["labels"] == manifest.labels
        assert metrics["max_prob_delta"] < 0.01
    else:
        assert np.allclose(np.linalg.norm(candidate, axis=1), 1.0)  # normalized, as ST does


def test_fp32_bundle_is_exact(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    result = optimize(
        tiny_models["xlmr-cls"],
        tmp_path / "b",
        "text-classification",
        quantize_mode="none",
        measure_latency=False,
    )
    assert result.manifest.quantization is None
    assert result.manifest.fidelity is not None
    assert result.manifest.fidelity["agreement"] == 1.0
    assert result.manifest.fidelity["max_prob_delta"] < 1e-5
    assert [v["name"] for v in result.report["variants"]] == ["fp32"]


def test_refuses_bundle_below_bar(
    tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "refused"
    # No int8 setting can keep every probability within 1e-12 of the original.
    code = main(
        [
            "optimize",
            str(tiny_models["bert-cls"]),
            "--task",
            "text-classification",
            "-o",
            str(out),
            "--max-prob-delta",
            "1e-12",
            "--no-latency",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "refusing to write the bundle" in err
    assert "max probability delta" in err and "--force" in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging directory either

    with pytest.raises(FidelityError) as info:
        optimize(
            tiny_models["bert-emb"],
            out,
            "feature-extraction",
            setting="int8-tensor",
            bar=FidelityBar(min_min_cosine=1.0),
            measure_latency=False,
        )
    assert info.value.failures and "min cosine" in info.value.failures[0]
    assert not out.exists()


def test_force_writes_and_marks_the_bundle(
    tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "forced"
    code = main(
        [
            "optimize",
            str(tiny_models["bert-cls"]),
            "--task",
            "text-classification",
            "-o",
            str(out),
            "--max-prob-delta",
            "1e-12",
            "--force",
            "--no-latency",
            "--setting",
            "int8-channel",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "below the fidelity bar" in captured.err
    manifest = BundleManifest.load(out)
    assert manifest.fidelity is not None
    assert manifest.fidelity["passes"] is False and manifest.fidelity["forced"] is True
    assert manifest.quantization is not None and manifest.quantization["name"] == "int8-channel"


def test_json_report_samples_file_and_clean_cwd(
    tiny_models: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    samples = tmp_path / "samples.txt"
    samples.write_text("first sentence\n\nzweiter Satz\ntroisième phrase\n", encoding="utf-8")
    code = main(
        [
            "optimize",
            str(tiny_models["xlmr-cls"]),
            "--task",
            "text-classification",
            "-o",
            str(tmp_path / "b"),
            "--samples",
            str(samples),
            "--json",
            "--report",
            str(tmp_path / "report.json"),
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 3
    chosen = [v for v in report["variants"] if v["chosen"]]
    assert [v["name"] for v in chosen] == [report["chosen"]]
    assert set(chosen[0]["latency"]) == {"batch1_ms", "batch1_per_s", "batch32_ms", "batch32_per_s"}
    assert report["original"]["latency"]["batch32_per_s"] > 0
    assert report["onnx_fp32_size"] > chosen[0]["size"]
    # The report is also written to --report, and quantization left nothing in the cwd.
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert list(work.iterdir()) == []

    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    code = main(
        [
            "optimize",
            str(tiny_models["xlmr-cls"]),
            "--task",
            "text-classification",
            "-o",
            str(tmp_path / "c"),
            "--samples",
            str(empty),
        ]
    )
    assert code == 1
    assert "holds no sentences" in capsys.readouterr().err


def test_table_lists_every_variant(
    tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "optimize",
            str(tiny_models["bert-emb"]),
            "--task",
            "feature-extraction",
            "-o",
            str(tmp_path / "b"),
            "--no-latency",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "original (torch)" in out and "mean_cosine" in out
    for name in ("int8-gather-channel", "int8-channel", "uint8-tensor"):
        assert name in out
    assert "chosen" in out and f"wrote {tmp_path / 'b'}" in out


def test_classifier_source_without_labels_is_refused(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    code = main(
        [
            "optimize",
            str(tiny_models["bert-emb"]),
            "--task",
            "text-classification",
            "-o",
            str(tmp_path / "b"),
        ]
    )
    assert code == 1
    assert not (tmp_path / "b").exists()


def test_bundle_is_reproducible_and_packs(
    tiny_models: dict[str, Path],
    int8_bundles: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = int8_bundles["xlmr-cls"]
    again = tmp_path / "again"
    assert (
        main(
            [
                "optimize",
                str(tiny_models["xlmr-cls"]),
                "--task",
                "text-classification",
                "-o",
                str(again),
                "--no-latency",
            ]
        )
        == 0
    )
    names = sorted(p.name for p in first.iterdir())
    assert names == ["config.json", "model.onnx", "modelyard.json", "tokenizer.json"]
    for name in names:  # same model in, same bytes out: packing gives the same image digest
        assert (first / name).read_bytes() == (again / name).read_bytes(), name

    layout = tmp_path / "layout"
    assert main(["pack", str(first), "-t", "org/tiny-xlmr:int8", "-o", str(layout)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(layout), "-t", "int8", "--json"]) == 0
    image = json.loads(capsys.readouterr().out)
    assert sorted(f["path"] for f in image["files"]) == names


def test_multi_label_classifier(tmp_path: Path) -> None:
    src = make_tiny_model(
        tmp_path / "ml", "bert", "text-classification", num_labels=5, seed=4, multi_label=True
    )
    result = optimize(src, tmp_path / "b", "text-classification", measure_latency=False)
    assert result.manifest.fidelity is not None and result.manifest.fidelity["passes"]
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"  # the runner applies sigmoid

    reference = np.array([[0.9, 0.2, 0.6], [0.1, 0.4, 0.7]])
    same_top = np.array([[0.9, 0.2, 0.4], [0.1, 0.4, 0.7]])  # label 2 of row 0 drops below 0.5
    assert compare("text-classification", reference, same_top)["agreement"] == 1.0
    metrics = compare("text-classification", reference, same_top, multi_label=True)
    assert metrics["agreement"] == 0.5 and metrics["disagreements"] == 1


def test_unloadable_source_is_a_clear_error(
    tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["bert-cls"], broken)
    (broken / "model.safetensors").unlink()
    code = main(
        ["optimize", str(broken), "--task", "text-classification", "-o", str(tmp_path / "b")]
    )
    assert code == 1
    assert "cannot load" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_cli_setting_choices_are_the_quantize_settings() -> None:
    # The CLI keeps its own copy of the names (no onnxruntime import for --help): keep it in step.
    from modelyard.cli.optimize import _SETTING_NAMES
    from modelyard.optimize.quantize import EXTRA_SETTINGS, SETTINGS

    assert tuple(s.name for s in (*SETTINGS, *EXTRA_SETTINGS)) == _SETTING_NAMES
