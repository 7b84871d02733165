"""Where modelyard keeps its files by default, following the XDG base directory spec."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable)
    # The spec says relative values are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / fallback


def data_dir() -> Path:
    """`$XDG_DATA_HOME/modelyard` (default `~/.local/share/modelyard`)."""
    return _xdg("XDG_DATA_HOME", ".local/share") / "modelyard"


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/modelyard` (default `~/.cache/modelyard`)."""
    return _xdg("XDG_CACHE_HOME", ".cache") / "modelyard"


def state_dir() -> Path:
    """`$XDG_STATE_HOME/modelyard` (default `~/.local/state/modelyard`)."""
    return _xdg("XDG_STATE_HOME", ".local/state") / "modelyard"


def registry_root() -> Path:
    """Default storage root of `modelyard registry serve`."""
    return data_dir() / "registry"
