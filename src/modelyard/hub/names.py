"""Hugging Face repository ids as OCI repository names, and back.

Hub names may hold upper-case letters (`Qwen/Qwen2.5-7B`); OCI names may not. The mapping
works on each `/`-separated component on its own:

1. The component is lower-cased.
2. If it held upper-case letters, `--u` and the positions of those letters are appended:
   0-based character indices, consecutive indices written as a run `start-end`, runs joined
   by `.`, in increasing order.

    Qwen/Qwen2.5-7B                        ->  qwen--u0/qwen2.5-7b--u0.9
    meta-llama/Llama-3.1-8B                ->  meta-llama/llama-3.1-8b--u0.11
    sentence-transformers/all-MiniLM-L6-v2 ->  sentence-transformers/all-minilm-l6-v2--u4.8-9.11
    openai-community/gpt2                  ->  openai-community/gpt2   (unchanged)

The hub forbids `--` in names, so the first `--` of an OCI component always starts the suffix
and the mapping is reversible; a lower-case hub name maps to itself. `oci_to_hf` accepts only
names that `hf_to_oci` produces (it re-encodes and compares), so every OCI name has at most
one hub name. A hub name whose lower-cased form is still not a valid OCI component (a leading
`_`, `___`, `-.`) is refused with `InvalidReference`.

Revisions become tags as they are when they are valid tags (`main`, `v1.0`, a commit hash);
`latest`, the tag a client asks for by default, means `main`.
"""

from __future__ import annotations

import re

from modelyard.errors import InvalidReference
from modelyard.oci.reference import NAME_COMPONENT, TAG_RE, validate_name

_SUFFIX = "--u"
_OCI_COMPONENT_RE = re.compile(rf"^{NAME_COMPONENT}$")
_HF_COMPONENT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,96}$")
_RUNS_RE = re.compile(r"^\d+(?:-\d+)?(?:\.\d+(?:-\d+)?)*$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
DEFAULT_REVISION = "main"


def _runs(indices: list[int]) -> str:
    runs: list[str] = []
    start = prev = indices[0]
    for i in [*indices[1:], -2]:
        if i != prev + 1:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
            start = i
        prev = i
    return ".".join(runs)


def component_to_oci(component: str) -> str:
    """One hub name component (`Qwen2.5-7B`) as an OCI component (`qwen2.5-7b--u0.9`).

    Raises: InvalidReference if the component has no OCI form.
    """
    if not _HF_COMPONENT_RE.match(component) or "--" in component or ".." in component:
        raise InvalidReference(
            f"invalid hub name {component!r}: letters, digits, '-', '_', '.', no '--' or '..'"
        )
    lower = component.lower()
    if not _OCI_COMPONENT_RE.match(lower):
        raise InvalidReference(
            f"hub name {component!r} has no OCI form: a component must start and end with a "
            "letter or digit and separate words with one of '.', '_', '__', '-'"
        )
    upper = [i for i, c in enumerate(component) if c.isupper()]
    return f"{lower}{_SUFFIX}{_runs(upper)}" if upper else lower


def component_to_hf(component: str) -> str:
    """The inverse of `component_to_oci`. Raises: InvalidReference if it has no hub name."""
    prefix, sep, code = component.partition("--")
    if not sep:
        if not _OCI_COMPONENT_RE.match(component):
            raise InvalidReference(f"invalid repository name component {component!r}")
        return component
    if not code.startswith("u") or not _RUNS_RE.match(code[1:]):
        raise InvalidReference(
            f"{component!r} is not a mapped hub name: the part after '--' must be "
            "'u' and the upper-case positions, like 'qwen2.5-7b--u0.9'"
        )
    chars = list(prefix)
    for run in code[1:].split("."):
        start, _, end = run.partition("-")
        for i in range(int(start), int(end or start) + 1):
            if i >= len(chars) or not chars[i].islower():
                raise InvalidReference(f"{component!r}: position {i} is not a lower-case letter")
            chars[i] = chars[i].upper()
    name = "".join(chars)
    if component_to_oci(name) != component:  # not canonical: unsorted or overlapping runs
        raise InvalidReference(
            f"{component!r} is not in canonical form; did you mean {component_to_oci(name)!r}?"
        )
    return name


def hf_to_oci(repo_id: str) -> str:
    """`Qwen/Qwen2.5-7B` -> `qwen--u0/qwen2.5-7b--u0.9`. Raises: InvalidReference."""
    parts = repo_id.split("/")
    if not 1 <= len(parts) <= 2:
        raise InvalidReference(f"invalid hub repository id {repo_id!r}: use ORG/NAME")
    return validate_name("/".join(component_to_oci(p) for p in parts))


def oci_to_hf(name: str) -> str:
    """`qwen--u0/qwen2.5-7b--u0.9` -> `Qwen/Qwen2.5-7B`. Raises: InvalidReference."""
    parts = name.split("/")
    if not 1 <= len(parts) <= 2:
        raise InvalidReference(f"{name!r} is not a hub repository: use ORG/NAME")
    return "/".join(component_to_hf(p) for p in parts)


def revision_to_tag(revision: str) -> str:
    """The tag an image imported at `revision` gets. Raises: InvalidReference."""
    if not TAG_RE.match(revision):
        raise InvalidReference(
            f"revision {revision!r} is not a valid image tag; give the tag with -t NAME:TAG"
        )
    return revision


def tag_to_revision(tag: str) -> str:
    """The hub revision a pulled tag asks for: `latest` is `main`, others are as they are."""
    return DEFAULT_REVISION if tag == "latest" else tag


def is_commit(revision: str) -> bool:
    """A full commit hash: an immutable revision."""
    return bool(_COMMIT_RE.match(revision))
