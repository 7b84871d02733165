"""Export of tiny real models to ONNX bundles: onnxruntime + tokenizers reproduce torch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from modelyard.bundle import BundleManifest
from modelyard.errors import BundleError, SourceNotFound
from modelyard.optimize.pipeline import export_bundle

SENTENCES = [
    "The model is very good",
    "Le chat est très bon et la maison est grande",
    "Der Hund ist nicht gut",
    "我 是 猫",
    "hello",
    "zzqx unknown wörds " * 30,  # longer than max_length: must be truncated, not crash
]


def _bundle_outputs(bundle: Path, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
    manifest = BundleManifest.load(bundle)
    tok = Tokenizer.from_file(str(bundle / manifest.tokenizer))
    enc = tok.encode_batch(sentences)
    feeds = {
        "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
    }
    session = ort.InferenceSession(str(bundle / manifest.model), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == manifest.inputs
    out = session.run([manifest.output], {n: feeds[n] for n in manifest.inputs})[0]
    return out, feeds["attention_mask"]


@pytest.mark.parametrize("name", ["bert-cls", "xlmr-cls"])
def test_classifier_bundle_matches_torch(
    tiny_models: dict[str, Path], tmp_path: Path, name: str
) -> None:
    src = tiny_models[name]
    manifest = export_bundle(src, tmp_path / "bundle", "text-classification")
    config = json.loads((src / "config.json").read_text())
    assert manifest.labels == [config["id2label"][str(i)] for i in range(len(manifest.labels))]
    assert manifest.output == "logits"
    assert manifest.max_length == 64

    logits, mask = _bundle_outputs(tmp_path / "bundle", SENTENCES)
    assert mask.shape[1] == 64  # the long sentence was truncated at the model's max length
    assert mask[4].sum() < 10  # "hello" was padded to the batch, not to a fixed length

    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModelForSequenceClassification.from_pretrained(src).eval()
    batch = tok(SENTENCES, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).logits.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_embedding_bundle_matches_torch(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    src = tiny_models["bert-emb"]
    manifest = export_bundle(src, tmp_path / "bundle", "feature-extraction")
    assert (manifest.pooling, manifest.normalize, manifest.labels) == ("mean", True, None)
    hidden, mask = _bundle_outputs(tmp_path / "bundle", SENTENCES)

    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModel.from_pretrained(src).eval()
    batch = tok(SENTENCES, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).last_hidden_state.numpy()
    valid = mask.astype(bool)  # padded positions are never read by pooling
    np.testing.assert_allclose(hidden[valid], expected[valid], atol=1e-5)


def test_bundle_files_and_manifest(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    export_bundle(tiny_models["xlmr-cls"], out, "text-classification")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.onnx",
        "modelyard.json",
        "tokenizer.json",
    ]
    data = json.loads((out / "modelyard.json").read_text())
    assert data["format"] == 1
    assert data["inputs"] == ["input_ids", "attention_mask"]  # XLM-R: no token type ids
    tok = json.loads((out / "tokenizer.json").read_text())
    assert tok["padding"]["strategy"] == "BatchLongest"
    assert tok["padding"]["pad_id"] == 1
    assert tok["truncation"]["max_length"] == 64
    # Writing again replaces the bundle in place.
    export_bundle(tiny_models["xlmr-cls"], out, "text-classification")
    assert BundleManifest.load(out).labels == ["label0", "label1", "label2", "label3"]


def test_refuses_to_overwrite_foreign_dir(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "data.txt").write_text("keep me")
    with pytest.raises(BundleError, match="not a modelyard bundle"):
        export_bundle(tiny_models["bert-cls"], out, "text-classification")
    assert (out / "data.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["precious"]  # no staging dir left behind


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound):
        export_bundle(tmp_path / "nope", tmp_path / "out", "text-classification")


def test_manifest_validation(tmp_path: Path) -> None:
    good = BundleManifest(
        task="text-classification",
        max_length=16,
        inputs=["input_ids"],
        output="logits",
        labels=["a", "b"],
    )
    assert BundleManifest.from_dict(json.loads(good.to_json())) == good
    for bad, message in [
        ({"task": "translation"}, "unknown task"),
        ({"labels": None}, "labels"),
        ({"max_length": 0}, "max_length"),
        ({"model": "../x.onnx"}, "inside the bundle"),
        ({"format": 2}, "unsupported bundle format"),
        ({"extra": 1}, "unknown keys"),
    ]:
        with pytest.raises(BundleError, match=message):
            BundleManifest.from_dict({**good.to_dict(), **bad})
    with pytest.raises(BundleError, match="missing"):
        BundleManifest.load(tmp_path)


def test_hub_cache_snapshot_origin(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    snapshot = tmp_path / "hub" / "models--org--tiny-bert" / "snapshots" / "0123abcd"
    shutil.copytree(tiny_models["bert-cls"], snapshot)
    manifest = export_bundle(snapshot, tmp_path / "bundle", "text-classification")
    assert manifest.source == {"repo": "org/tiny-bert", "revision": "0123abcd"}
    plain = export_bundle(tiny_models["bert-cls"], tmp_path / "plain", "text-classification")
    assert plain.source == {"path": str(tiny_models["bert-cls"].absolute()), "revision": None}


def test_optimize_checks_destination_before_work(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.optimize import pipeline

    out = tmp_path / "precious"
    out.mkdir()
    (out / "data.txt").write_text("keep me")

    def no_load(*_: object) -> None:
        raise AssertionError("the model was loaded before the destination was checked")

    monkeypatch.setattr(pipeline, "load_torch_model", no_load)
    with pytest.raises(BundleError, match="not a modelyard bundle"):
        pipeline.optimize(tiny_models["bert-cls"], out, "text-classification")
    assert (out / "data.txt").read_text() == "keep me"
