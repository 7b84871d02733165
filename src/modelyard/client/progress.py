"""A byte-count progress bar shared by worker threads (tqdm on stderr, or nothing)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

Progress = Callable[[int], None]


class ByteProgress:
    """`update(n)` from any thread; `n` may be negative after an upload rewinds.

    Args:
        total: bytes expected.
        label: text before the bar.
        quiet: no bar at all.
        callback: also called with every update (e.g. by a caller's own progress display).
    """

    def __init__(
        self, total: int, label: str, *, quiet: bool = False, callback: Progress | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._callback = callback
        self._bar = None
        if not quiet and total > 0:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                leave=True,
                dynamic_ncols=True,
            )

    def update(self, n: int) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.update(n)
            if self._callback is not None:
                self._callback(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ByteProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
