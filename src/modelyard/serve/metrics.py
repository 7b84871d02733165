"""Prometheus metrics of the runner, in the text exposition format (version 0.0.4).

Small on purpose: counters, gauges and histograms with labels, updated from the event loop and
worker threads (each metric has its own lock), rendered by `Metrics.render()`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable

LabelKey = tuple[tuple[str, str], ...]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def _key(labels: dict[str, str]) -> LabelKey:
    return tuple(sorted(labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_labels(key: Iterable[tuple[str, str]], extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in key]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class _Scalar(_Metric):
    """One value per label set: the common part of counters and gauges."""

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self._values: dict[LabelKey, float] = {}

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_fmt_labels(k)} {_num(v)}" for k, v in items]


class Counter(_Scalar):
    kind = "counter"

    def inc(self, amount: float = 1, **labels: str) -> None:
        key = _key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount


class Gauge(_Scalar):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[_key(labels)] = value


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        super().__init__(name, help_text)
        self.buckets = (*buckets, math.inf)
        self._counts: dict[LabelKey, list[int]] = {}
        self._sums: dict[LabelKey, float] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = _key(labels)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * len(self.buckets))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
                    break
            self._sums[key] = self._sums.get(key, 0.0) + value

    def render(self) -> list[str]:
        lines = self.header()
        with self._lock:
            items = sorted((k, list(v), self._sums[k]) for k, v in self._counts.items())
        for key, counts, total in items:
            running = 0
            for bound, count in zip(self.buckets, counts, strict=True):
                running += count
                le = 'le="' + _num(bound) + '"'
                lines.append(f"{self.name}_bucket{_fmt_labels(key, le)} {running}")
            lines.append(f"{self.name}_sum{_fmt_labels(key)} {_num(total)}")
            lines.append(f"{self.name}_count{_fmt_labels(key)} {running}")
        return lines


class Metrics:
    """Every metric the runner exports."""

    def __init__(self) -> None:
        self.requests = Counter("modelyard_requests_total", "HTTP requests by model and status.")
        self.latency = Histogram(
            "modelyard_request_duration_seconds",
            "Inference request latency, from arrival to answer.",
            LATENCY_BUCKETS,
        )
        self.queue_wait = Histogram(
            "modelyard_queue_wait_seconds",
            "Time a request waited in its model's queue.",
            LATENCY_BUCKETS,
        )
        self.batch_size = Histogram(
            "modelyard_batch_size", "Rows (texts or items) per batch run.", BATCH_BUCKETS
        )
        self.tokens = Counter("modelyard_tokens_total", "Tokens run through each model.")
        self.load_seconds = Histogram(
            "modelyard_model_load_seconds", "Time to load a model.", LOAD_BUCKETS
        )
        self.evictions = Counter(
            "modelyard_model_evictions_total", "Models evicted to stay within the memory budget."
        )
        self.resident = Gauge(
            "modelyard_model_resident_bytes", "Measured resident size of each loaded model."
        )
        self.overloads = Counter(
            "modelyard_overloaded_total", "Requests refused with 429 because a queue was full."
        )

    def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.requests,
            self.latency,
            self.queue_wait,
            self.batch_size,
            self.tokens,
            self.load_seconds,
            self.evictions,
            self.resident,
            self.overloads,
        ):
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
