"""Custom pipelines the runner tests load by name (`sample_pipelines:Class`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

from modelyard.errors import InvalidInput
from modelyard.serve.custom import on_startup, run_once


@dataclass
class Question:
    text: str
    repeat: int = 1
    style: Literal["plain", "upper"] = "plain"


class Answer(TypedDict):
    text: str
    length: int
    tags: list[str]


class Echo:
    """Typed input and output: both become OpenAPI schemas."""

    def predict(self, q: Question) -> Answer:
        if not 0 <= q.repeat <= 100:
            raise InvalidInput("repeat must be within 0..100")  # answered 422
        text = q.text.upper() if q.style == "upper" else q.text
        return {"text": text * q.repeat, "length": len(text) * q.repeat, "tags": ["echo"]}


@dataclass
class Empty:
    pass


@dataclass
class Calls:
    run_once_calls: int
    served_by: list[str] = field(default_factory=list)


class OnceCounter:
    """`warm_up` must run exactly once however many first requests arrive together."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.counter = Path(options["counter_file"])
        self.warmed = False
        with Path(options["loads_file"]).open("a") as fh:  # one line per load of the model
            fh.write("loaded\n")

    @run_once
    def warm_up(self) -> None:
        with self.counter.open("a") as fh:
            fh.write("called\n")
        time.sleep(0.5)  # long enough for all 50 first requests to arrive meanwhile
        self.warmed = True

    def predict(self, _: Empty) -> Calls:
        if not self.warmed:
            raise RuntimeError("predict ran before run_once finished")
        calls = len(self.counter.read_text().splitlines())
        return Calls(run_once_calls=calls)


class SlowStartup:
    def __init__(self, options: dict[str, Any]) -> None:
        self.seconds = float(options.get("seconds", 2))
        self.started = False

    @on_startup
    def warm(self) -> None:
        time.sleep(self.seconds)
        self.started = True

    def predict(self, _: Empty) -> dict[str, bool]:
        return {"started": self.started}


class Blob:
    """Holds `mb` megabytes of touched memory, so that its measured resident size is real."""

    def __init__(self, options: dict[str, Any], name: str) -> None:
        import numpy as np

        self.name = name
        self.data = np.ones(int(options["mb"]) * 1024 * 1024 // 8, dtype=np.float64)

    def predict(self, _: Empty) -> dict[str, str]:
        return {"model": self.name, "sum": str(int(self.data[:10].sum()))}


class Slow:
    def __init__(self, options: dict[str, Any]) -> None:
        self.seconds = float(options.get("seconds", 1))
        self.closed_file = options.get("closed_file")

    def predict(self, q: Question) -> dict[str, str]:
        time.sleep(self.seconds)
        return {"text": q.text}

    def close(self) -> None:
        if self.closed_file:
            Path(self.closed_file).write_text("closed")


class Broken:
    def __init__(self) -> None:
        raise RuntimeError("weights are corrupt: checksum mismatch in layer 3")

    def predict(self, q: Question) -> dict[str, str]:
        return {}
