from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelyard.testing.peers import docker_registry

# distribution's access log (Apache combined format): request line, status, bytes written.
_ACCESS = re.compile(r'"(GET|HEAD) (/v2/\S+/blobs/sha256:[0-9a-f]{64}) HTTP/[\d.]+" (\d{3}) (\d+)')


@dataclass
class Registry:
    host: str
    root: Path
    log: Path

    def blob_bytes_served(self, since: int = 0) -> int:
        """Blob bytes the registry wrote, from its access log (past byte `since` of the log)."""
        with open(self.log, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        return sum(int(m.group(4)) for m in _ACCESS.finditer(text) if m.group(1) == "GET")

    def mark(self) -> int:
        return self.log.stat().st_size

    def blob_file(self, digest: str) -> Path:
        hex_ = digest.split(":", 1)[1]
        return self.root / "data/docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("registry")
    with docker_registry(root) as host:
        yield Registry(host, root, root / "registry.log")
