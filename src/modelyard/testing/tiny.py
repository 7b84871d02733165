"""Tiny real Hugging Face models, written offline for tests and demos.

The architectures are real (BERT, XLM-RoBERTa) and load with `transformers`; the weights are
random and the vocabulary is a few hundred words, so a model directory is well under 1 MB and
takes a fraction of a second to write. Needs the `export` extra (torch, transformers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

Arch = Literal["bert", "xlm-roberta"]
Task = Literal["text-classification", "feature-extraction"]

ARCHES: tuple[str, ...] = ("bert", "xlm-roberta")
TASKS: tuple[str, ...] = ("text-classification", "feature-extraction")

# Words from several languages, so that tokenization of the built-in multilingual samples is not
# all unknown tokens. Order matters: it fixes the vocabulary ids.
# fmt: off
_WORDS = [
    "the", "a", "an", "and", "or", "of", "to", "in", "on", "for", "with", "is", "are", "was",
    "be", "this", "that", "it", "not", "no", "yes", "good", "bad", "very", "model", "image",
    "registry", "layer", "weight", "server", "request", "fast", "slow", "small", "large",
    "cat", "dog", "house", "car", "le", "la", "les", "un", "une", "et", "ou", "de", "du",
    "des", "est", "sont", "pas", "très", "bon", "mauvais", "maison", "chat", "chien",
    "voiture", "der", "die", "das", "ein", "eine", "und", "oder", "ist", "sind", "nicht",
    "sehr", "gut", "schlecht", "haus", "katze", "hund", "auto", "el", "los", "las", "una", "y",
    "o", "es", "son", "muy", "bueno", "malo", "casa", "gato", "perro", "coche", "il", "lo",
    "gli", "uno", "è", "sono", "molto", "buono", "cattivo", "gatto", "cane", "macchina", "o",
    "os", "um", "uma", "e", "é", "são", "muito", "bom", "mau", "casa", "gato", "cão", "carro",
    "de", "het", "een", "en", "of", "is", "zijn", "niet", "zeer", "goed", "slecht", "huis",
    "kat", "hond", "dom", "kot", "pies", "samochód", "jest", "dobry", "zły", "bardzo", "我",
    "你", "他", "是", "的", "不", "好", "很", "猫", "狗", "家", "车", "模型", "こんにちは",
    "猫", "犬", "家", "車", "です", "привет", "кот", "собака", "дом", "машина", "хорошо",
    "плохо", "очень", "مرحبا", "قطة", "كلب", "بيت", "سيارة", "جيد", "नमस्ते", "बिल्ली",
    "कुत्ता", "घर", "अच्छा", "hello", "world", "today", "weather", "happy", "sad", "love",
    "hate", "movie", "book", "music", "food",
]
# fmt: on


def _word_list() -> list[str]:
    seen: dict[str, None] = {}
    for word in _WORDS:
        seen.setdefault(word, None)
    return list(seen)


def _alphabet() -> list[str]:
    chars: dict[str, None] = {}
    for word in _word_list():
        for ch in word:
            chars.setdefault(ch, None)
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789.,!?;:'\"-()":
        chars.setdefault(ch, None)
    return list(chars)


def _bert_tokenizer(max_length: int):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab: dict[str, int] = {}
    for token in specials + _word_list() + _alphabet() + [f"##{c}" for c in _alphabet()]:
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    ), len(vocab)


def _xlmr_tokenizer(max_length: int):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    # XLM-R's fairseq order: <s>=0, <pad>=1, </s>=2, <unk>=3; the model needs pad id 1.
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    pieces: dict[str, float] = {}
    for i, word in enumerate(_word_list()):
        pieces.setdefault("▁" + word, -5.0 - i * 0.001)
    for ch in _alphabet():
        pieces.setdefault(ch, -10.0)
        pieces.setdefault("▁" + ch, -10.5)
    pieces.setdefault("▁", -11.0)
    vocab = [(s, 0.0) for s in specials] + list(pieces.items()) + [("<mask>", 0.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=max_length,
    ), len(vocab)


def make_tiny_model(
    directory: str | Path,
    arch: Arch = "bert",
    task: Task = "text-classification",
    *,
    num_labels: int = 3,
    seed: int = 0,
    max_length: int = 64,
    hidden_size: int = 32,
    num_layers: int = 2,
    multi_label: bool = False,
) -> Path:
    """Write a tiny randomly initialised model directory, as `save_pretrained` would.

    Args:
        directory: where to write (created if missing).
        arch: "bert" (WordPiece tokenizer) or "xlm-roberta" (Unigram tokenizer).
        task: "text-classification" writes a sequence classifier with `id2label`;
            "feature-extraction" writes a bare encoder plus the sentence-transformers files
            (`modules.json`, mean pooling, `sentence_bert_config.json`).
        num_labels: classifier labels (named `label0`, `label1`, ...).
        seed: torch seed for the random weights; same seed, same model.
        max_length: the tokenizer's `model_max_length` and the model's usable positions.
        multi_label: mark the classifier `multi_label_classification` (sigmoid per label).

    Returns:
        The model directory.

    Example:
        >>> path = make_tiny_model(tmp_path / "bert", "bert", "text-classification")
    """
    import torch
    from transformers import (
        AutoModel,
        AutoModelForSequenceClassification,
        BertConfig,
        XLMRobertaConfig,
    )
    from transformers.utils import logging as hf_logging

    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHES}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)

    common: dict[str, Any] = {
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 4,
        "intermediate_size": hidden_size * 2,
        # Real models ship with dropout 0.1; keep it, so that a model left in training mode
        # shows up as non-deterministic outputs in tests.
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
    }
    if task == "text-classification":
        labels = {i: f"label{i}" for i in range(num_labels)}
        common["id2label"] = labels
        common["label2id"] = {v: k for k, v in labels.items()}
        if multi_label:
            common["problem_type"] = "multi_label_classification"
    if arch == "bert":
        tokenizer, vocab_size = _bert_tokenizer(max_length)
        config = BertConfig(vocab_size=vocab_size, max_position_embeddings=max_length, **common)
    else:
        tokenizer, vocab_size = _xlmr_tokenizer(max_length)
        # RoBERTa positions start after the padding index, hence the 2 extra positions.
        config = XLMRobertaConfig(
            vocab_size=vocab_size,
            max_position_embeddings=max_length + 2,
            type_vocab_size=1,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            **common,
        )

    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    if task == "text-classification":
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModel.from_config(config)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)

    if task == "feature-extraction":
        _write_sentence_transformers_files(out, hidden_size, max_length)
    return out


def _write_sentence_transformers_files(out: Path, hidden_size: int, max_length: int) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        {
            "idx": 2,
            "name": "2",
            "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize",
        },
    ]
    (out / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    pooling = {
        "word_embedding_dimension": hidden_size,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")
    (out / "2_Normalize").mkdir(exist_ok=True)
    (out / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_length, "do_lower_case": False}, indent=2) + "\n"
    )
