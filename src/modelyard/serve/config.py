"""The runner's configuration: a TOML or JSON file, and `--model NAME=REF[:PIPELINE]` flags.

Example (TOML)::

    [server]
    memory_budget = "1GiB"
    history_window = "24h"

    [[models]]
    name = "minilm"
    ref = "./minilm-int8"            # a directory, or oci:LAYOUT_DIR:TAG
    pipeline = "feature-extraction"  # or text-classification, or package.module:Class
    preload = true
    pinned = true
    [models.batching]
    max_batch_size = 32
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from modelyard.errors import ServeConfigError

BUILTIN_PIPELINES = ("text-classification", "feature-extraction")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def parse_size(value: int | str) -> int:
    """Bytes from `123`, `"512MB"`, `"1.5GiB"` (k/M/G/T decimal, Ki/Mi/Gi/Ti binary)."""
    if isinstance(value, bool):
        raise ServeConfigError(f"not a size: {value!r}")
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ServeConfigError(f"not a size: {value!r} (use e.g. 512MB or 2GiB)")
    unit = (m.group(2) or "").lower()
    base = unit[:1]
    mult = 1024 ** "bkmgt".index(base) if "i" in unit else _UNITS[base]
    return int(float(m.group(1)) * mult)


def parse_duration(value: int | float | str) -> float:
    """Seconds from `30`, `"500ms"`, `"24h"`, `"7d"`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ServeConfigError(f"not a duration: {value!r} (use e.g. 500ms, 30s, 24h)")
    return float(m.group(1)) * _SECONDS[m.group(2) or "s"]


@dataclass(frozen=True)
class BatchingConfig:
    """How one model's queue forms batches.

    A batch closes when it holds `max_batch_size` rows or `max_batch_tokens` tokens, or when
    `max_wait_ms` passed since its first request (0: take what is queued when the model is free,
    which keeps single requests as fast as sequential mode). `sequential` runs one request at a
    time. `concurrency` is how many batches run at once (see `ModelConfig.instances`).
    `max_queue` bounds waiting requests (beyond it: 429).
    """

    max_batch_size: int = 32
    max_wait_ms: float = 0.0
    max_batch_tokens: int = 16384
    max_queue: int = 512
    sequential: bool = False
    concurrency: int | None = None
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_batch_tokens", "max_queue", "concurrency"):
            value = getattr(self, name)
            if name == "concurrency" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ServeConfigError(f"batching.{name} must be an integer >= 1, not {value!r}")
        for name in ("max_wait_ms", "timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ServeConfigError(f"batching.{name} must be a number >= 0, not {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """One served model: where its files are, which pipeline runs it, how it is kept.

    `threads` is onnxruntime's intra-op threads per instance (see `intra_op_threads`);
    `lone_threads` those of the second session a batch runs on when no other batch of the model
    is running (see `lone_session_threads`; 0: no second session).
    `max_inputs` and `max_text_chars` bound one request (beyond them: 413); `max_length` and
    `truncation_side` override what the model files say; `options` go to a custom class.
    """

    name: str
    ref: str | None
    pipeline: str | None = None
    preload: bool = False
    pinned: bool = False
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    max_length: int | None = None
    truncation_side: str | None = None
    normalize: bool | None = None
    top_k: int = 1
    max_inputs: int = 256
    max_text_chars: int = 100_000
    threads: int | None = None
    lone_threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ServeConfigError(f"invalid model name {self.name!r} (letters, digits, _.-)")
        if self.ref is None and not self.is_custom:
            raise ServeConfigError(f"model {self.name!r}: a built-in pipeline needs a ref")
        if self.truncation_side not in (None, "left", "right"):
            raise ServeConfigError(f"model {self.name!r}: truncation_side is left or right")
        for key, least in (("threads", 1), ("lone_threads", 0)):
            value = getattr(self, key)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < least
            ):
                raise ServeConfigError(f"model {self.name!r}: {key} must be an integer >= {least}")

    @property
    def is_custom(self) -> bool:
        return self.pipeline is not None and self.pipeline not in BUILTIN_PIPELINES

    @property
    def instances(self) -> int:
        """Batches of this model that may run at once, each on its own thread.

        `batching.concurrency` if set; 1 in sequential mode and for custom pipelines (their code
        need not be thread-safe); else one per core, like Triton's instance count. On 2 cores
        with MiniLM int8 (which gains little from larger batches) at 32 connections: two
        batches at a time with 1 onnxruntime thread each, 1,220-1,330 req/s; one batch with 2
        threads, 1,030-1,180; one batch with 1 thread, about 800.
        """
        if self.batching.sequential:
            return 1
        if self.batching.concurrency is not None:
            return self.batching.concurrency
        return 1 if self.is_custom else (os.cpu_count() or 1)

    @property
    def intra_op_threads(self) -> int:
        """onnxruntime's intra-op threads per instance: `threads`, else the cores shared out
        among the instances, and at most half of them: the event loop needs a core too."""
        if self.threads:
            return self.threads
        return max(1, (os.cpu_count() or 1) // max(2, self.instances))

    @property
    def lone_session_threads(self) -> int:
        """Threads of a second onnxruntime session for batches that run alone (0: none).

        With several instances of 1 thread each, a request that arrives at a quiet time would
        use one core of many: on 2 cores, one sentence took 0.8 ms with 2 threads, 1.2 ms with
        1. So by default a model with several instances also gets a session with all the cores,
        used when its other instances are idle; it costs the memory of a second session.
        """
        if self.lone_threads is not None:
            return self.lone_threads
        if self.instances < 2 or self.threads:
            return 0
        cores = os.cpu_count() or 1
        return cores if cores > self.intra_op_threads else 0


@dataclass(frozen=True)
class ServeConfig:
    models: tuple[ModelConfig, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8080
    memory_budget: int | None = None
    state_dir: Path | None = None
    history_window_s: float = 7 * 86400.0
    history_preload: bool = True
    max_body_bytes: int = 16 * 1024 * 1024
    drain_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ServeConfigError(f"model names must be unique: {', '.join(dupes)}")


def _check_keys(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ServeConfigError(f"{where}: unknown keys {', '.join(unknown)}")


def model_from_dict(obj: Any, base_dir: Path | None = None) -> ModelConfig:
    if not isinstance(obj, dict):
        raise ServeConfigError(f"a model entry must be a table/object, not {obj!r}")
    allowed = {f.name for f in fields(ModelConfig)}
    _check_keys(obj, allowed, f"model {obj.get('name', '?')!r}")
    args = dict(obj)
    if "name" not in args:
        raise ServeConfigError("a model entry needs a name")
    batching = args.pop("batching", {}) or {}
    if not isinstance(batching, dict):
        raise ServeConfigError(f"model {args['name']!r}: batching must be a table")
    _check_keys(batching, {f.name for f in fields(BatchingConfig)}, "batching")
    try:
        args["batching"] = BatchingConfig(**batching)
        ref = args.get("ref")
        if isinstance(ref, str) and base_dir is not None:
            args["ref"] = _relative_ref(ref, base_dir)
        return ModelConfig(**args)
    except TypeError as exc:
        raise ServeConfigError(f"model {args['name']!r}: {exc}") from exc


def _relative_ref(ref: str, base_dir: Path) -> str:
    """Local paths in a config file are relative to the file, like most tools do."""
    if ref.startswith("oci:"):
        rest = ref[4:]
        path, sep, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
        if not Path(path).is_absolute():
            path = str(base_dir / path)
        return f"oci:{path}{sep}{tag}"
    if ref.startswith(("./", "../")):
        return str(base_dir / ref)
    return ref


def load_config(path: Path) -> ServeConfig:
    """Read a `.toml` or `.json` runner configuration.

    Raises: ServeConfigError on unreadable files, syntax errors, unknown keys or bad values.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ServeConfigError(f"cannot read config {path}: {exc}") from exc
    try:
        if path.suffix == ".json":
            obj = json.loads(raw)
        else:
            import tomllib

            obj = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServeConfigError(f"cannot parse config {path}: {exc}") from exc
    if not isinstance(obj, dict):
        raise ServeConfigError(f"config {path} must hold a table/object")
    return config_from_dict(obj, path.parent.resolve())


def config_from_dict(obj: dict[str, Any], base_dir: Path | None = None) -> ServeConfig:
    _check_keys(obj, {"server", "models"}, "config")
    server = obj.get("server", {}) or {}
    if not isinstance(server, dict):
        raise ServeConfigError("[server] must be a table")
    _check_keys(
        server,
        {
            "host",
            "port",
            "memory_budget",
            "state_dir",
            "history_window",
            "history_preload",
            "max_body_bytes",
            "drain_timeout",
        },
        "[server]",
    )
    models = obj.get("models", []) or []
    if not isinstance(models, list):
        raise ServeConfigError("models must be an array of tables")
    kwargs: dict[str, Any] = {"models": tuple(model_from_dict(m, base_dir) for m in models)}
    if "host" in server:
        kwargs["host"] = str(server["host"])
    if "port" in server:
        kwargs["port"] = int(server["port"])
    if server.get("memory_budget") is not None:
        kwargs["memory_budget"] = parse_size(server["memory_budget"])
    if "state_dir" in server:
        state = Path(server["state_dir"])
        kwargs["state_dir"] = state if state.is_absolute() or base_dir is None else base_dir / state
    if "history_window" in server:
        kwargs["history_window_s"] = parse_duration(server["history_window"])
    if "history_preload" in server:
        kwargs["history_preload"] = bool(server["history_preload"])
    if "max_body_bytes" in server:
        kwargs["max_body_bytes"] = parse_size(server["max_body_bytes"])
    if "drain_timeout" in server:
        kwargs["drain_timeout_s"] = parse_duration(server["drain_timeout"])
    return ServeConfig(**kwargs)


def parse_model_flag(value: str) -> ModelConfig:
    """`NAME=REF[:PIPELINE]`, where PIPELINE is a built-in one; the pipeline is inferred if absent.

    Custom pipelines (`package.module:Class`) go in a config file.
    """
    name, sep, rest = value.partition("=")
    if not sep or not name or not rest:
        raise ServeConfigError(f"--model expects NAME=PATH[:pipeline], got {value!r}")
    pipeline = None
    head, colon, tail = rest.rpartition(":")
    if colon and tail in BUILTIN_PIPELINES:
        rest, pipeline = head, tail
    return ModelConfig(name=name, ref=rest, pipeline=pipeline)


def default_state_dir() -> Path:
    """`$XDG_STATE_HOME/modelyard/runner` (default `~/.local/state/modelyard/runner`)."""
    from modelyard.paths import state_dir

    return state_dir() / "runner"
