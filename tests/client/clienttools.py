"""Helpers for the registry client tests: a counting TCP proxy that can inject failures, and
small model images built with the packer. Registries and credentials: `modelyard.testing.peers`."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.pack import PackOptions, pack

# A counting TCP proxy that understands just enough HTTP/1.1 to act on single requests.

CLOSE_503 = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass
class Rule:
    """Act on the `nth` request (1-based) whose method is `method` and path contains `path`.

    action "respond": read the request body, send `response` instead of forwarding, close.
    action "cut": forward the head and `after` body bytes, then drop both connections.
    """

    method: str
    path: str
    action: str
    nth: int = 1
    response: bytes = CLOSE_503
    after: int = 0
    seen: int = 0
    fired: int = 0


@dataclass
class Seen:
    method: str
    path: str
    body: int
    forwarded: int


@dataclass
class CountingProxy:
    upstream: int
    rules: list[Rule] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    #: Bytes forwarded from the client to the registry (heads and bodies).
    bytes_up: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._stop = False
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bytes_up = 0

    def body_bytes(self, method: str | None = None, path: str = "") -> int:
        return sum(
            r.forwarded
            for r in self.requests
            if (method is None or r.method == method) and path in r.path
        )

    def close(self) -> None:
        self._stop = True
        self._sock.close()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _count(self, n: int) -> None:
        with self._lock:
            self.bytes_up += n

    def _serve(self, conn: socket.socket) -> None:
        up = socket.create_connection(("127.0.0.1", self.upstream))
        self._conns.append(up)
        threading.Thread(target=_pipe, args=(up, conn), daemon=True).start()
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(1 << 20)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                head += b"\r\n\r\n"
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                length = int(headers.get("content-length", "0"))
                rule = self._match(method, path)
                seen = Seen(method, path, length, 0)
                with self._lock:
                    self.requests.append(seen)
                if rule is not None and rule.action == "respond":
                    left = length - len(buf[:length])
                    buf = buf[length:]
                    while left > 0:
                        data = conn.recv(min(left, 1 << 20))
                        if not data:
                            return
                        left -= len(data)
                    conn.sendall(rule.response)
                    return
                limit = rule.after if rule is not None else length
                up.sendall(head)
                self._count(len(head))
                body_left = length
                sent = 0
                while body_left > 0:
                    if not buf:
                        buf = conn.recv(min(body_left, 1 << 20))
                        if not buf:
                            return
                    piece, buf = buf[:body_left], buf[body_left:]
                    if sent + len(piece) > limit:
                        piece = piece[: limit - sent]
                        up.sendall(piece)
                        self._count(len(piece))
                        seen.forwarded += len(piece)
                        return  # "cut": drop both connections mid-body
                    up.sendall(piece)
                    self._count(len(piece))
                    seen.forwarded += len(piece)
                    sent += len(piece)
                    body_left -= len(piece)
        except OSError:
            return
        finally:
            for s in (conn, up):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def _match(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.method == method and rule.path in path:
                    rule.seen += 1
                    if rule.seen == rule.nth:
                        rule.fired += 1
                        return rule
        return None


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(1 << 20)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


# Model images.

SMALL_THRESHOLD = 1 << 20


def write_model(root: Path, *, revision: int = 1, weights: int = 3 << 20, seed: int = 7) -> Path:
    """A model dir: small text files and one big float-like weights file."""
    import random

    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(
        json.dumps({"architectures": ["BertModel"], "hidden_size": 32, "revision": revision})
    )
    (root / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0, "b": 1}}}))
    rng = random.Random(seed)
    (root / "model.safetensors").write_bytes(rng.randbytes(weights))
    return root


def pack_model(source: Path, layout: Path, tag: str = "v1") -> Path:
    pack(source, tag, layout, PackOptions(threshold=SMALL_THRESHOLD, mtime=0))
    return layout


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run `modelyard ARGS` in a subprocess, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "modelyard", *args], capture_output=True, text=True, timeout=300
    )
    return proc.returncode, proc.stdout, proc.stderr
