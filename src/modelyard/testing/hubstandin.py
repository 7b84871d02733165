"""A stand-in for the Hugging Face Hub, for tests: the real hub is unreachable from here.

It speaks the part of the hub's HTTP protocol that `huggingface_hub` uses to resolve and
download a model, with the hub's status codes and headers, so that the real library (and
curl) can talk to it unchanged through `HF_ENDPOINT`:

- `GET /api/models/{repo_id}` and `/api/models/{repo_id}/revision/{rev}`: model info with the
  commit `sha` and `siblings` (`size`, `blobId`, `lfs {sha256, size, pointerSize}` when
  `?blobs=true`, as `model_info(files_metadata=True)` asks).
- `GET /api/models/{repo_id}/tree/{rev}[/{path}]?recursive=`: the file tree, paginated with a
  `Link: <...>; rel="next"` header (`list_repo_tree`, used by `snapshot_download`).
- `HEAD/GET /{repo_id}/resolve/{rev}/{filename}`: a small (git) file is served directly with
  `ETag: "<git blob sha1>"`; an LFS file answers `302 Found` to a signed URL on a second origin
  (the "CDN"), with `X-Linked-Etag: "<sha256>"` and `X-Linked-Size`. Every answer carries
  `X-Repo-Commit`. GETs honour `Range` (206, 416).
- Errors as the hub sends them, with `X-Error-Code`/`X-Error-Message`: `RepoNotFound` (401
  without a token, 404 with one), `GatedRepo` (401 without a token, 403 with one that has no
  access), `RevisionNotFound` and `EntryNotFound` (404), an invalid token (401).

Files are copied into the stand-in's own content-addressed store at commit time, so a commit
never changes. `commit()` on an existing branch moves it, as a push to the hub does. Every
request is appended to `requests` as `(method, path, range)`; `served` lists the files whose
content was sent. Run it with `with HubStandIn(tmp) as hub:`; it binds two free ports on
127.0.0.1 (hub and CDN) and serves from threads.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import mimetypes
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

#: Suffixes the hub's default `.gitattributes` sends to LFS.
LFS_SUFFIXES = frozenset(
    [
        ".7z",
        ".arrow",
        ".bin",
        ".bz2",
        ".ckpt",
        ".ftz",
        ".gz",
        ".h5",
        ".joblib",
        ".mlmodel",
        ".model",
        ".msgpack",
        ".npy",
        ".npz",
        ".onnx",
        ".ot",
        ".parquet",
        ".pb",
        ".pickle",
        ".pkl",
        ".pt",
        ".pth",
        ".rar",
        ".safetensors",
        ".tar",
        ".tflite",
        ".tgz",
        ".wasm",
        ".xz",
        ".zip",
        ".zst",
    ]
)
#: The hub refuses files of this size outside LFS.
LFS_SIZE = 10 << 20
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in sorted(LFS_SUFFIXES))
_CHUNK = 1 << 20
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class HubFile:
    path: str
    blob: Path  # in the stand-in's store
    size: int
    sha256: str  # hex
    git_sha1: str  # git blob id of the content
    lfs: bool

    @property
    def pointer(self) -> bytes:
        """The git-lfs pointer that git holds in place of an LFS file."""
        return (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
            f"size {self.size}\n"
        ).encode()

    @property
    def blob_id(self) -> str:
        """What the hub reports as `oid`/`blobId`: the git blob id of what git stores."""
        return _git_blob_sha1(self.pointer) if self.lfs else self.git_sha1


@dataclass
class Commit:
    sha: str
    files: dict[str, HubFile]
    date: str


@dataclass
class HubRepo:
    repo_id: str
    gated: bool = False
    private: bool = False
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branches and tags -> commit sha


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


class HubStandIn:
    """The stand-in hub: repositories, commits, refs, and the two HTTP servers."""

    def __init__(
        self,
        state_dir: str | Path | None = None,
        tokens: tuple[str, ...] = ("hf_standin_token",),
        page_size: int = 1000,
    ) -> None:
        self._own_state = state_dir is None
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="hubstandin-"))
        (self.state_dir / "blobs").mkdir(parents=True, exist_ok=True)
        self.tokens = set(tokens)
        self.page_size = page_size
        self.repos: dict[str, HubRepo] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        #: (repo_id, path, bytes sent) for every response that carried file content.
        self.served: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._secret = os.urandom(16)
        #: (repo_id, path) -> [bytes to send before hanging up, times left]
        self._faults: dict[tuple[str, str], list[int]] = {}
        self._servers: list[ThreadingHTTPServer] = []
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []

    # lifecycle

    def start(self) -> HubStandIn:
        for handler in (_HubHandler, _CdnHandler):
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            server.hub = self  # type: ignore[attr-defined]
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        with self._lock:  # kept-alive connections too: the hub is gone
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)
        self._servers.clear()
        self._threads.clear()
        if self._own_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> HubStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """What `HF_ENDPOINT` should be set to."""
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    # content

    def add_repo(
        self, repo_id: str, directory: str | Path, *, gated: bool = False, private: bool = False
    ) -> str:
        """Create `repo_id` with one commit of `directory` on `main`; returns the commit sha."""
        with self._lock:
            if repo_id in self.repos:
                raise ValueError(f"{repo_id} exists")
            self.repos[repo_id] = HubRepo(repo_id, gated=gated, private=private)
        return self.commit(repo_id, directory)

    def commit(self, repo_id: str, directory: str | Path, branch: str = "main") -> str:
        """Commit the files of `directory` (plus a `.gitattributes`) on `branch`, moving it."""
        repo = self.repos[repo_id]
        files: dict[str, HubFile] = {}
        root = Path(directory)
        sources = [(p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file()]
        if ".gitattributes" not in {rel for rel, _ in sources}:
            attributes = self.state_dir / "gitattributes"
            attributes.write_text(GITATTRIBUTES)
            sources.append((".gitattributes", attributes))
        for rel, path in sorted(sources):
            files[rel] = self._store(rel, path)
        parent = repo.refs.get(branch, "")
        tree = "".join(f"{f.path}\0{f.blob_id}\n" for f in files.values())
        sha = hashlib.sha1(f"{parent}\n{tree}\n{time.time_ns()}".encode()).hexdigest()
        date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        with self._lock:
            repo.commits[sha] = Commit(sha, files, date)
            repo.refs[branch] = sha
        return sha

    def set_ref(self, repo_id: str, ref: str, sha: str) -> None:
        """Point a branch or tag at an existing commit."""
        with self._lock:
            repo = self.repos[repo_id]
            if sha not in repo.commits:
                raise KeyError(sha)
            repo.refs[ref] = sha

    def _store(self, rel: str, path: Path) -> HubFile:
        size = path.stat().st_size
        sha256 = hashlib.sha256()
        git = hashlib.sha1(b"blob %d\0" % size)
        fd, tmp = tempfile.mkstemp(dir=self.state_dir / "blobs")
        with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
            while chunk := src.read(_CHUNK):
                sha256.update(chunk)
                git.update(chunk)
                dst.write(chunk)
        blob = self.state_dir / "blobs" / sha256.hexdigest()
        os.replace(tmp, blob)
        lfs = Path(rel).suffix.lower() in LFS_SUFFIXES or size >= LFS_SIZE
        return HubFile(rel, blob, size, sha256.hexdigest(), git.hexdigest(), lfs)

    # log

    def _log(self, method: str, path: str, range_: str | None) -> None:
        with self._lock:
            self.requests.append((method, path, range_))

    def downloaded(self, repo_id: str | None = None) -> list[str]:
        """Paths of the files whose content was sent (a file may appear more than once)."""
        with self._lock:
            return [p for r, p, _ in self.served if repo_id is None or r == repo_id]

    def cut_after(self, repo_id: str, path: str, nbytes: int, times: int = 1) -> None:
        """The next `times` downloads of `path` stop after `nbytes` and the connection is
        closed, as a network failure would do (clients then resume with `Range`)."""
        with self._lock:
            self._faults[(repo_id, path)] = [nbytes, times]

    def _fault(self, repo_id: str, path: str) -> int | None:
        with self._lock:
            fault = self._faults.get((repo_id, path))
            if not fault or fault[1] <= 0:
                return None
            fault[1] -= 1
            return fault[0]

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.served.clear()

    # protocol

    def _repo(self, repo_id: str, token: str | None) -> HubRepo:
        if token is not None and token not in self.tokens:
            raise _HubError(401, None, "Invalid credentials in Authorization header")
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and token is None):
            # The hub cannot tell "missing" from "private" to someone without a token.
            raise _HubError(401 if token is None else 404, "RepoNotFound", "Repository not found")
        return repo

    def _commit(self, repo: HubRepo, revision: str) -> Commit:
        with self._lock:
            sha = repo.refs.get(revision)
            if sha is None and _COMMIT_RE.match(revision) and revision in repo.commits:
                sha = revision
        if sha is None:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return repo.commits[sha]

    def _check_gate(self, repo: HubRepo, token: str | None) -> None:
        if not repo.gated:
            return
        if token is None:
            raise _HubError(
                401,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted. You must have access to it and "
                "be authenticated to access it. Please log in.",
            )

    def _model_info(self, repo: HubRepo, commit: Commit, blobs: bool) -> dict[str, Any]:
        siblings = []
        for f in commit.files.values():
            entry: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                entry["size"] = f.size
                entry["blobId"] = f.blob_id
                if f.lfs:
                    entry["lfs"] = {
                        "sha256": f.sha256,
                        "size": f.size,
                        "pointerSize": len(f.pointer),
                    }
            siblings.append(entry)
        author = repo.repo_id.split("/")[0] if "/" in repo.repo_id else None
        return {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": author,
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": commit.date,
            "private": repo.private,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(f.size for f in commit.files.values()),
        }

    def _tree(self, commit: Commit, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        entries: dict[str, dict[str, Any]] = {}
        base = prefix.strip("/")
        for f in commit.files.values():
            if base and not f.path.startswith(base + "/"):
                continue
            rest = f.path[len(base) + 1 :] if base else f.path
            parts = rest.split("/")
            # Directories on the way are listed too, as git trees are.
            for depth in range(1, len(parts)):
                if not recursive and depth > 1:
                    break
                d = "/".join(([base] if base else []) + parts[:depth])
                entries.setdefault(
                    d,
                    {"type": "directory", "oid": _git_blob_sha1(d.encode()), "size": 0, "path": d},
                )
            if recursive or len(parts) == 1:
                entry: dict[str, Any] = {
                    "type": "file",
                    "oid": f.blob_id,
                    "size": f.size,
                    "path": f.path,
                }
                if f.lfs:
                    entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(f.pointer)}
                entries[f.path] = entry
        if base and not entries:
            raise _HubError(404, "EntryNotFound", f"{base} does not exist on {commit.sha}")
        return [entries[k] for k in sorted(entries)]

    def _sign(self, sha256: str, expires: int) -> str:
        return hmac.new(self._secret, f"{sha256}:{expires}".encode(), "sha256").hexdigest()

    def cdn_url(self, repo: HubRepo, f: HubFile) -> str:
        expires = int(time.time()) + 3600
        disposition = quote(f'inline; filename="{f.path.rsplit("/", 1)[-1]}"', safe="")
        repo_key = hashlib.sha256(repo.repo_id.encode()).hexdigest()
        return (
            f"{self.cdn}/repos/{repo_key[:2]}/{repo_key[2:4]}/{repo_key}/{f.sha256}"
            f"?response-content-disposition={disposition}&Expires={expires}"
            f"&Signature={self._sign(f.sha256, expires)}&repo={quote(repo.repo_id, safe='')}"
            f"&file={quote(f.path, safe='')}"
        )


# HTTP

_MODEL_INFO_RE = re.compile(
    r"^/api/models/(?P<repo>[^/]+(?:/[^/]+)??)(?:/revision/(?P<rev>[^/]+))?$"
)
_TREE_RE = re.compile(
    r"^/api/models/(?P<repo>[^/]+(?:/[^/]+)??)/tree/(?P<rev>[^/]+)(?P<path>/.*)?$"
)
_RESOLVE_RE = re.compile(r"^/(?P<repo>[^/]+(?:/[^/]+)??)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


class _Unsatisfiable(Exception):
    pass


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single `bytes=` range; None for the whole file.

    Raises: _Unsatisfiable (answered with 416).
    """
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                raise _Unsatisfiable
            return max(0, size - n), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        raise _Unsatisfiable
    return start, min(end, size - 1)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hubstandin"

    @property
    def hub(self) -> HubStandIn:
        return self.server.hub  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._connections.add(self.connection)

    def finish(self) -> None:
        with self.hub._lock:
            self.hub._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _send(
        self, status: int, headers: dict[str, str], body: bytes = b"", head: bool = False
    ) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, obj: Any, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", **(extra or {})}
        self._send(200, headers, body, head=self.command == "HEAD")

    def _error(self, err: _HubError) -> None:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if err.code:
            headers["X-Error-Code"] = err.code
        headers["X-Error-Message"] = err.message
        if err.commit:
            headers["X-Repo-Commit"] = err.commit
        body = json.dumps({"error": err.message}).encode()
        self._send(err.status, headers, body, head=self.command == "HEAD")

    def _send_file(
        self, f: HubFile, headers: dict[str, str], repo_id: str, head: bool = False
    ) -> None:
        try:
            rng = _parse_range(self.headers.get("Range"), f.size)
        except _Unsatisfiable:
            self._send(416, {**headers, "Content-Range": f"bytes */{f.size}"}, head=head)
            return
        start, end = (0, f.size - 1) if rng is None else rng
        length = max(0, end - start + 1)
        self.send_response(200 if rng is None else 206)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        if rng is not None:
            self.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if head:
            return
        cut = self.hub._fault(repo_id, f.path)
        limit = length if cut is None else min(cut, length)
        sent = 0
        with open(f.blob, "rb") as src:
            src.seek(start)
            while sent < limit:
                chunk = src.read(min(_CHUNK, limit - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
        with self.hub._lock:
            self.hub.served.append((repo_id, f.path, sent))
        if cut is not None:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.hub._log(self.command, url.path, self.headers.get("Range"))
        try:
            self.route(url.path, parse_qs(url.query))
        except _HubError as err:
            self._error(err)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def route(self, path: str, query: dict[str, list[str]]) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()


class _HubHandler(_Handler):
    def route(self, path: str, query: dict[str, list[str]]) -> None:
        hub, token = self.hub, self._token()
        if path == "/api/agent-harnesses":  # asked once a day by huggingface_hub >= 1.x
            self._json({"standardEnvVars": [], "harnesses": {}})
        elif m := _TREE_RE.match(path):
            repo = hub._repo(unquote(m["repo"]), token)
            commit = hub._commit(repo, unquote(m["rev"]))
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            entries = hub._tree(commit, unquote(m["path"] or ""), recursive)
            cursor = int(base64.urlsafe_b64decode(query.get("cursor", ["MA=="])[0]) or 0)
            page = entries[cursor : cursor + hub.page_size]
            extra = {}
            if cursor + hub.page_size < len(entries):
                nxt = base64.urlsafe_b64encode(str(cursor + hub.page_size).encode()).decode()
                link = f"{hub.endpoint}{path}?recursive={str(recursive).lower()}&cursor={nxt}"
                extra["Link"] = f'<{link}>; rel="next"'
            self._json(page, extra)
        elif m := _MODEL_INFO_RE.match(path):
            repo = hub._repo(unquote(m["repo"]), token)
            commit = hub._commit(repo, unquote(m["rev"] or "main"))
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            self._json(hub._model_info(repo, commit, blobs))
        elif m := _RESOLVE_RE.match(path):
            self._resolve(unquote(m["repo"]), unquote(m["rev"]), unquote(m["file"]), token)
        else:
            self._send(404, {"Content-Type": "text/plain"}, b"Not Found", self.command == "HEAD")

    def _resolve(self, repo_id: str, revision: str, filename: str, token: str | None) -> None:
        hub = self.hub
        repo = hub._repo(repo_id, token)
        commit = hub._commit(repo, revision)
        hub._check_gate(repo, token)
        f = commit.files.get(filename)
        if f is None:
            raise _HubError(404, "EntryNotFound", "Entry not found", commit=commit.sha)
        head = self.command == "HEAD"
        name = filename.rsplit("/", 1)[-1]
        headers = {"X-Repo-Commit": commit.sha, "Vary": "Origin"}
        if f.lfs:
            location = hub.cdn_url(repo, f)
            body = f"Found. Redirecting to {location}".encode()
            headers.update(
                {
                    "Location": location,
                    "ETag": f'"{f.sha256}"',
                    "X-Linked-Etag": f'"{f.sha256}"',
                    "X-Linked-Size": str(f.size),
                    "Content-Type": "text/plain; charset=utf-8",
                }
            )
            self._send(302, headers, body, head)
            return
        headers.update(
            {
                "ETag": f'"{f.git_sha1}"',
                "Content-Type": mimetypes.guess_type(name)[0] or "text/plain; charset=utf-8",
                "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}; "
                f'filename="{name}";',
            }
        )
        self._send_file(f, headers, repo_id, head)


class _CdnHandler(_Handler):
    """The LFS storage behind the hub's redirects: signed URLs, no hub headers, no auth."""

    def route(self, path: str, query: dict[str, list[str]]) -> None:
        hub = self.hub
        sha256 = path.rsplit("/", 1)[-1]
        try:
            expires = int(query["Expires"][0])
            signature = query["Signature"][0]
            repo = hub.repos[query["repo"][0]]
            f = next(
                iter(
                    c.files[query["file"][0]]
                    for c in repo.commits.values()
                    if query["file"][0] in c.files and c.files[query["file"][0]].sha256 == sha256
                )
            )
        except (KeyError, ValueError, IndexError, StopIteration):
            self._send(403, {"Content-Type": "text/plain"}, b"AccessDenied", self.command == "HEAD")
            return
        if expires < time.time() or not hmac.compare_digest(signature, hub._sign(sha256, expires)):
            self._send(403, {"Content-Type": "text/plain"}, b"AccessDenied", self.command == "HEAD")
            return
        disposition = query.get("response-content-disposition", ["attachment"])[0]
        headers = {
            "Content-Type": "binary/octet-stream",
            "ETag": f'"{hashlib.md5(sha256.encode()).hexdigest()}"',
            "Content-Disposition": disposition,
        }
        self._send_file(f, headers, repo.repo_id, self.command == "HEAD")
