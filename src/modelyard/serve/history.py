"""Traffic history in SQLite (`history.sqlite` in the runner's state dir).

Requests are counted in memory per (model, minute) and flushed every few seconds and at
shutdown, so a request costs no disk write. The measured resident size of each model is kept
too, so that at the next start the runner knows which hot models fit in the budget before loading
any of them.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS traffic (
    model TEXT NOT NULL,
    minute INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    PRIMARY KEY (model, minute)
);
CREATE TABLE IF NOT EXISTS sizes (
    model TEXT PRIMARY KEY,
    resident_bytes INTEGER NOT NULL,
    measured_at REAL NOT NULL
);
"""


class TrafficHistory:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the loop and threads, serialised by our lock.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}

    def record(self, model: str, requests: int = 1, now: float | None = None) -> None:
        minute = int((now or time.time()) // 60)
        with self._lock:
            key = (model, minute)
            self._counts[key] = self._counts.get(key, 0) + requests

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
            if not counts:
                return
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT INTO traffic (model, minute, requests) VALUES (?, ?, ?) "
                    "ON CONFLICT (model, minute) "
                    "DO UPDATE SET requests = requests + excluded.requests",
                    [(m, minute, n) for (m, minute), n in counts.items()],
                )

    def hottest(self, window_s: float, now: float | None = None) -> list[tuple[str, int]]:
        """Models by requests within the last `window_s` seconds, most requested first."""
        since = int(((now or time.time()) - window_s) // 60)
        with self._lock:
            rows = self._db.execute(
                "SELECT model, SUM(requests) AS n FROM traffic WHERE minute >= ? "
                "GROUP BY model ORDER BY n DESC, model",
                (since,),
            ).fetchall()
        return [(str(m), int(n)) for m, n in rows]

    def set_size(self, model: str, resident_bytes: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO sizes (model, resident_bytes, measured_at) VALUES (?, ?, ?) "
                "ON CONFLICT (model) DO UPDATE SET resident_bytes = excluded.resident_bytes, "
                "measured_at = excluded.measured_at",
                (model, resident_bytes, time.time()),
            )

    def sizes(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT model, resident_bytes FROM sizes").fetchall()
        return {str(m): int(b) for m, b in rows}

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()
