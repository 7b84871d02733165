"""The contract between the runner and a model.

The runner calls, in this order:
    `prepare(payload)`   on the event loop, per request: validate and tokenize; cheap. Raises
                         `InvalidInput` / `InputTooLarge`. Returns a `Prepared` with its cost.
    `run(batch)`         in a worker thread, per batch of prepared requests; returns one result
                         per request, in order. Must not touch the event loop. Several batches
                         may run at once (`ModelConfig.instances`).
    `run_alone(batch)`   the same, for a batch that runs while no other batch of the model
                         does: it may use more threads. By default `run`.
    `close()`            when the model is evicted or unloaded.
`load` (the constructor) and `startup()` run in a worker thread before the model is READY;
`after_ready()` runs in that thread just after: work the model can serve without (its memory
counts toward the model's resident size all the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Prepared:
    """One request ready for batching: `rows` count against max_batch_size, `tokens` against
    max_batch_tokens."""

    value: Any
    rows: int = 1
    tokens: int = 0


class Pipeline:
    """Base class of built-in and custom pipelines."""

    task: str = "custom"
    # JSON schemas of the /v1/models/{name}/predict body and answer, for OpenAPI.
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]

    def startup(self) -> None:
        """Work to do before the model is READY (runs in a worker thread)."""

    def prepare(self, payload: Any) -> Prepared:
        raise NotImplementedError

    def run(self, batch: list[Prepared]) -> list[Any]:
        raise NotImplementedError

    def run_alone(self, batch: list[Prepared]) -> list[Any]:
        return self.run(batch)

    def after_ready(self) -> None:
        """Work that may finish while the model already serves (runs in a worker thread)."""

    def close(self) -> None:
        """Release what the model holds."""
