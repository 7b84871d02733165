"""Deciding which files share a layer.

Files at or above the threshold get a layer each; all smaller files share one layer. Past the
layer limit, adjacent large files (in path order) are merged into evenly sized groups. The plan
depends only on the file list and the options, so the same content gives the same layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelyard.pack.source import SourceFile

DEFAULT_THRESHOLD = 16 << 20
MAX_LAYERS = 100


@dataclass(frozen=True)
class LayerPlan:
    files: tuple[SourceFile, ...]
    #: True for the layer holding all files under the threshold.
    small: bool

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def title(self) -> str | None:
        """The file a single-file layer holds (`org.opencontainers.image.title`)."""
        return self.files[0].path if len(self.files) == 1 and not self.small else None


def plan_layers(
    files: Sequence[SourceFile],
    threshold: int = DEFAULT_THRESHOLD,
    max_layers: int = MAX_LAYERS,
) -> list[LayerPlan]:
    if max_layers < 2:
        raise ValueError("max_layers must be at least 2")
    small = tuple(f for f in files if f.size < threshold)
    large = [f for f in files if f.size >= threshold]
    budget = max_layers - (1 if small else 0)
    groups: list[tuple[SourceFile, ...]]
    if len(large) <= budget:
        groups = [(f,) for f in large]
    else:
        # Split the ordered list into `budget` contiguous groups whose sizes differ by at most
        # one file: the first len % budget groups take one extra file.
        base, extra = divmod(len(large), budget)
        groups, start = [], 0
        for i in range(budget):
            n = base + (1 if i < extra else 0)
            groups.append(tuple(large[start : start + n]))
            start += n
    plans = [LayerPlan(small, True)] if small else []
    plans.extend(LayerPlan(g, False) for g in groups)
    return plans
