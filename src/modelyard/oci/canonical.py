"""Canonical JSON: sorted keys, no insignificant whitespace, UTF-8.

Every document modelyard writes goes through `dumps`, so the same content always gives the
same bytes and so the same digest.
"""

from __future__ import annotations

import json
from typing import Any


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
