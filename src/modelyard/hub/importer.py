"""Importing a Hugging Face Hub model into an OCI image layout.

The steps: resolve the revision to a commit (one `model_info` call, which also gives every
file's size and, for LFS files, the hub's sha256), download the selected files into the local
Hugging Face cache with `snapshot_download` (parallel, resumable, shared with every other
tool that uses the cache), verify each file against the hub's hashes in a streaming pass, and
pack exactly those files with `modelyard.pack.pack`. The image is tagged with the revision
and with the commit hash; its annotations name the repository and commit only, so importing
`main` and importing the commit `main` points at give the same digest.

`HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_CACHE`/`HF_HOME` and `HF_HUB_OFFLINE` are read when an
import starts (not when the module is imported), so a long-running registry and tests can
change them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from modelyard.errors import (
    DigestMismatch,
    HubEntryNotFound,
    HubError,
    HubGated,
    HubNotCached,
    HubRepoNotFound,
    HubRevisionNotFound,
    HubUnavailable,
    InvalidReference,
)
from modelyard.hub.names import DEFAULT_REVISION, is_commit, revision_to_tag
from modelyard.oci.descriptor import Descriptor
from modelyard.oci.digest import iter_chunks
from modelyard.oci.layout import Layout
from modelyard.pack import PackOptions, pack
from modelyard.pack.packer import platform_tag

HF_SCHEME = "hf://"
HUB_URL = "https://huggingface.co"
SOURCE = "org.opencontainers.image.source"
REVISION = "org.opencontainers.image.revision"
_TRUE = {"1", "on", "yes", "true"}
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)?$")


@dataclass(frozen=True)
class HubSource:
    """A model on the hub at a revision: `hf://ORG/NAME[@REVISION]`."""

    repo_id: str
    revision: str = DEFAULT_REVISION

    @classmethod
    def parse(cls, value: str) -> HubSource:
        """Raises: InvalidReference if `value` is not `hf://ORG/NAME[@REVISION]`."""
        rest = value[len(HF_SCHEME) :] if value.startswith(HF_SCHEME) else value
        repo_id, sep, revision = rest.partition("@")
        repo_id = repo_id.strip("/")
        if not _REPO_ID_RE.match(repo_id) or (sep and not revision):
            raise InvalidReference(f"invalid hub model {value!r}: use hf://ORG/NAME[@REVISION]")
        return cls(repo_id, revision or DEFAULT_REVISION)

    def __str__(self) -> str:
        return f"{HF_SCHEME}{self.repo_id}@{self.revision}"


@dataclass(frozen=True)
class HubSettings:
    """Where the hub is and how to talk to it; `from_env()` reads the usual HF variables."""

    endpoint: str = HUB_URL
    token: str | None = None
    cache_dir: Path = Path.home() / ".cache" / "huggingface" / "hub"
    offline: bool = False
    max_workers: int = 8
    progress: bool = True

    @classmethod
    def from_env(cls, **overrides: object) -> HubSettings:
        env = os.environ
        if env.get("HF_HUB_CACHE"):
            cache = Path(env["HF_HUB_CACHE"])
        elif env.get("HF_HOME"):
            cache = Path(env["HF_HOME"]) / "hub"
        else:
            xdg = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
            cache = Path(xdg) / "huggingface" / "hub"
        settings = cls(
            endpoint=(env.get("HF_ENDPOINT") or HUB_URL).rstrip("/"),
            token=env.get("HF_TOKEN") or None,
            cache_dir=cache.expanduser(),
            offline=(env.get("HF_HUB_OFFLINE") or "").strip().lower() in _TRUE,
            progress=(env.get("HF_HUB_DISABLE_PROGRESS_BARS") or "").lower() not in _TRUE,
        )
        return replace(settings, **overrides)  # type: ignore[arg-type]


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int | None
    #: The hub's sha256 (LFS files) and git blob id (the sha1 of small files' content).
    sha256: str | None = None
    git_sha1: str | None = None


@dataclass(frozen=True)
class Resolved:
    repo_id: str
    revision: str
    commit: str
    files: tuple[HubFile, ...]


@dataclass(frozen=True)
class ImportResult:
    repo_id: str
    revision: str
    commit: str
    layout: Path
    index: Descriptor
    tags: tuple[str, ...]
    files: tuple[HubFile, ...]
    annotations: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def translate_errors(repo_id: str, revision: str, settings: HubSettings) -> Iterator[None]:
    """Turn huggingface_hub's and httpx's exceptions into modelyard's, at the boundary."""
    import httpx2
    from huggingface_hub import errors as hf

    try:
        yield
    except HubError:
        raise
    except hf.GatedRepoError as exc:  # before RepositoryNotFoundError: it is a subclass
        raise HubGated(repo_id, settings.token is not None) from exc
    except hf.RepositoryNotFoundError as exc:
        raise HubRepoNotFound(repo_id) from exc
    except hf.RevisionNotFoundError as exc:
        raise HubRevisionNotFound(repo_id, revision) from exc
    except hf.RemoteEntryNotFoundError as exc:
        raise HubEntryNotFound(f"{repo_id}@{revision}: {_first_line(exc)}") from exc
    except (hf.LocalEntryNotFoundError, hf.IncompleteSnapshotError) as exc:
        if settings.offline:
            raise HubNotCached(
                f"{repo_id}@{revision} is not (fully) in the Hugging Face cache "
                f"{settings.cache_dir} and HF_HUB_OFFLINE is set"
            ) from exc
        raise HubUnavailable(f"cannot reach {settings.endpoint}: {_first_line(exc)}") from exc
    except hf.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise HubUnavailable(
            f"the hub at {settings.endpoint} answered {status}: {_first_line(exc)}"
        ) from exc
    except (httpx2.HTTPError, OSError) as exc:
        raise HubUnavailable(f"download from {settings.endpoint} failed: {exc}") from exc


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(exc).__name__


def _storage_folder(settings: HubSettings, repo_id: str) -> Path:
    return settings.cache_dir / ("models--" + repo_id.replace("/", "--"))


def resolve(source: HubSource, settings: HubSettings) -> Resolved:
    """The commit `source.revision` points at, with the metadata of every file in it.

    Offline, the commit comes from the cache's `refs/` and the file list from the snapshot
    folder; hashes are then unknown (the cache's blob names are used to verify instead).

    Raises: HubRepoNotFound, HubRevisionNotFound, HubGated, HubNotCached, HubUnavailable.
    """
    if settings.offline:
        commit = source.revision if is_commit(source.revision) else None
        if commit is None:
            ref = _storage_folder(settings, source.repo_id) / "refs" / source.revision
            try:
                commit = ref.read_text().strip()
            except FileNotFoundError as exc:
                raise HubNotCached(
                    f"{source} is not in the Hugging Face cache {settings.cache_dir} and "
                    "HF_HUB_OFFLINE is set"
                ) from exc
        snapshot = _storage_folder(settings, source.repo_id) / "snapshots" / commit
        files = tuple(
            HubFile(p.relative_to(snapshot).as_posix(), None)
            for p in sorted(snapshot.rglob("*"))
            if p.is_file()
        )
        return Resolved(source.repo_id, source.revision, commit, files)

    from huggingface_hub import HfApi

    api = HfApi(endpoint=settings.endpoint, token=settings.token)
    with translate_errors(source.repo_id, source.revision, settings):
        info = api.model_info(source.repo_id, revision=source.revision, files_metadata=True)
    if not info.sha:
        raise HubUnavailable(f"{settings.endpoint} sent no commit for {source}")
    files = tuple(
        HubFile(
            s.rfilename,
            s.size,
            s.lfs.sha256 if s.lfs else None,
            None if s.lfs else s.blob_id,
        )
        for s in info.siblings or []
    )
    return Resolved(source.repo_id, source.revision, info.sha, files)


def select(
    files: Sequence[HubFile], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> list[HubFile]:
    """The files that match an `include` pattern (all, if none) and no `exclude` pattern,
    with `snapshot_download`'s rules (fnmatch; `*` crosses `/`; `dir/` means `dir/*`)."""
    from huggingface_hub.utils import filter_repo_objects

    return list(
        filter_repo_objects(
            files,
            allow_patterns=list(include) or None,
            ignore_patterns=list(exclude) or None,
            key=lambda f: f.path,
        )
    )


def download(
    resolved: Resolved,
    files: Sequence[HubFile],
    settings: HubSettings,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Path:
    """Download `files` of the resolved commit into the HF cache; returns the snapshot dir.

    Raises: HubGated, HubEntryNotFound, HubNotCached, HubUnavailable (and the others of
    `translate_errors`).
    """
    from huggingface_hub import snapshot_download

    quiet = None if settings.progress else _silent_tqdm()
    with translate_errors(resolved.repo_id, resolved.revision, settings):
        snapshot = snapshot_download(
            resolved.repo_id,
            revision=resolved.commit,
            cache_dir=settings.cache_dir,
            endpoint=settings.endpoint,
            token=settings.token,
            local_files_only=settings.offline,
            allow_patterns=list(include) or None,
            ignore_patterns=list(exclude) or None,
            max_workers=settings.max_workers,
            tqdm_class=quiet,
        )
    if resolved.revision != resolved.commit and not settings.offline:
        # Record the branch the way huggingface_hub does, so an offline import of
        # `@main` finds this commit later.
        _write_ref(_storage_folder(settings, resolved.repo_id), resolved.revision, resolved.commit)
    missing = [f.path for f in files if not (Path(snapshot) / f.path).is_file()]
    if missing:
        error = HubNotCached if settings.offline else HubUnavailable
        raise error(f"{resolved.repo_id}@{resolved.commit}: missing {', '.join(missing)}")
    return Path(snapshot)


def _silent_tqdm() -> type:
    from tqdm.auto import tqdm

    class Silent(tqdm):  # type: ignore[misc,type-arg]
        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent


def _write_ref(folder: Path, revision: str, commit: str) -> None:
    """Best effort, as in huggingface_hub: a cache we cannot write refs to still imports."""
    ref = folder / "refs" / revision
    with contextlib.suppress(OSError):
        if ref.read_text() == commit:
            return
    tmp = None
    try:
        ref.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=ref.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            f.write(commit)
        os.replace(tmp, ref)
    except OSError:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _hash_file(path: Path, git: bool) -> tuple[str, str | None, int]:
    """(sha256, git blob sha1 if asked, size) in one streaming pass."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size) if git else None
    n = 0
    with open(path, "rb", buffering=0) as f:
        for chunk in iter_chunks(f):
            sha256.update(chunk)
            if sha1 is not None:
                sha1.update(chunk)
            n += len(chunk)
    return sha256.hexdigest(), sha1.hexdigest() if sha1 else None, n


def verify(snapshot: Path, files: Sequence[HubFile], jobs: int = 2) -> None:
    """Check every file against the hub's size and hashes (sha256 for LFS files, the git blob
    id for small ones). Offline, the expected hash is the cache blob's name, which is the ETag
    the hub sent when the file was downloaded.

    Raises: DigestMismatch naming the file, if one does not match (delete the cache file
    and import again).
    """

    def one(f: HubFile) -> None:
        path = snapshot / f.path
        blob = path.resolve().name
        sha256 = f.sha256 or (blob if re.fullmatch(r"[0-9a-f]{64}", blob) else None)
        git_sha1 = f.git_sha1 or (blob if re.fullmatch(r"[0-9a-f]{40}", blob) else None)
        actual256, actual1, size = _hash_file(path, git=git_sha1 is not None and not sha256)
        what = f"{f.path} in the Hugging Face cache ({path.resolve()})"
        if f.size is not None and size != f.size:
            raise DigestMismatch(f"{f.size} bytes", f"{size} bytes", f"{what}: size")
        if sha256 and actual256 != sha256:
            raise DigestMismatch(f"sha256:{sha256}", f"sha256:{actual256}", what)
        if git_sha1 and not sha256 and actual1 != git_sha1:
            raise DigestMismatch(f"git blob {git_sha1}", f"git blob {actual1}", what)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, files))


@contextlib.contextmanager
def staged(snapshot: Path, files: Sequence[HubFile], base: Path) -> Iterator[Path]:
    """A directory holding exactly `files` (hard links into the cache, copies if the file
    system refuses links), so that earlier downloads of other files are not packed."""
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=".modelyard-stage-"))
    try:
        for f in files:
            target = tmp / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            real = (snapshot / f.path).resolve()
            try:
                os.link(real, target)
            except OSError:
                shutil.copyfile(real, target)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def import_model(
    source: HubSource,
    output: str | Path,
    *,
    tag: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    settings: HubSettings | None = None,
    options: PackOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import `source` into the OCI image layout `output` (created, or added to).

    Args:
        source: the model and revision.
        output: the layout directory.
        tag: the tag to give the image besides the commit hash; default: the revision.
        include, exclude: file patterns, as `snapshot_download`'s allow/ignore patterns.
        settings: the hub to use; default `HubSettings.from_env()`.
        options: `modelyard.pack.PackOptions`; its annotations are kept, the source ones added.
        progress: called with the number of bytes packed.

    Raises:
        HubRepoNotFound, HubRevisionNotFound, HubGated, HubEntryNotFound, HubNotCached,
        HubUnavailable, InvalidReference (a revision that is not a valid tag, without `tag`).

    Example:
        >>> r = import_model(HubSource.parse("hf://org/model@main"), "./model.oci",
        ...                  include=["*.json", "*.onnx"])
        >>> r.tags
        ('main', '5f1c...')
    """
    settings = settings or HubSettings.from_env()
    resolved = resolve(source, settings)
    return import_resolved(
        resolved,
        output,
        tag=tag,
        include=include,
        exclude=exclude,
        settings=settings,
        options=options,
        progress=progress,
    )


def import_resolved(
    resolved: Resolved,
    output: str | Path,
    *,
    tag: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    settings: HubSettings | None = None,
    options: PackOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """`import_model` after `resolve`: for callers that resolve first (the registry's
    pull-through decides from the commit whether an import is needed at all)."""
    settings = settings or HubSettings.from_env()
    source = HubSource(resolved.repo_id, resolved.revision)
    chosen = select(resolved.files, include, exclude)
    if not chosen:
        patterns = " ".join(
            [*(f"--include {p}" for p in include), *(f"--exclude {p}" for p in exclude)]
        )
        raise HubEntryNotFound(
            f"no file of {source.repo_id}@{resolved.commit} matches {patterns or 'the filters'} "
            f"({len(resolved.files)} files in the repository)"
        )
    snapshot = download(resolved, chosen, settings, include, exclude)
    verify(snapshot, chosen)
    first = revision_to_tag(tag or source.revision)
    all_tags = tuple(dict.fromkeys((first, resolved.commit)))

    base = options or PackOptions()
    annotations = {
        **base.annotations,
        SOURCE: f"{HUB_URL}/{source.repo_id}",
        REVISION: resolved.commit,
    }
    pack_options = replace(base, annotations=annotations)
    out = Path(output)
    with staged(snapshot, chosen, _storage_folder(settings, source.repo_id)) as directory:
        result = pack(directory, all_tags[0], out, pack_options, progress)
    layout = Layout.open(result.layout)
    for tag in all_tags[1:]:
        layout.set_tag(tag, result.index)
        if len(result.manifests) > 1:
            for m in result.manifests:
                assert m.platform is not None
                layout.set_tag(platform_tag(tag, m.platform), m)
    return ImportResult(
        source.repo_id,
        source.revision,
        resolved.commit,
        result.layout,
        result.index,
        all_tags,
        tuple(chosen),
        annotations,
    )
