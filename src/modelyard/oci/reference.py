"""Docker-like image references: `[host[:port]/]org/name[:tag][@digest]`.

The repository name grammar is the distribution-spec's; a first component with a `.` or a
`:`, or `localhost`, is a registry host, as in Docker.

`Reference.parse` only splits: a reference without a host keeps `registry=None` (a local
name, as `pack -t org/model:v1` uses). `Reference.parse_remote` then completes it the way
Docker does for anything sent to a registry:

    ubuntu                      -> docker.io/library/ubuntu:latest
    org/model:v1                -> docker.io/org/model:v1
    index.docker.io/ubuntu      -> docker.io/library/ubuntu:latest
    localhost:5000/org/model    -> localhost:5000/org/model:latest
    ghcr.io/org/model@sha256:.. -> unchanged

The API of docker.io is served from `registry-1.docker.io` (`api_host`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelyard.errors import InvalidReference
from modelyard.oci.digest import Digest

NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{NAME_COMPONENT}(?:/{NAME_COMPONENT})*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
_HOST_RE = re.compile(
    r"^(?:localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+|[a-zA-Z0-9.-]+(?=:)|\[[0-9a-fA-F:]+\])"
    r"(?::\d+)?$"
)
#: Longest repository name accepted (host excluded), as most registries do.
MAX_NAME_LENGTH = 255
DEFAULT_TAG = "latest"
DOCKER_HUB = "docker.io"
#: Where docker.io's registry API answers.
DOCKER_HUB_API = "registry-1.docker.io"
#: Host names that all mean Docker Hub in a reference.
_DOCKER_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", DOCKER_HUB_API})
#: Docker Hub's namespace of official images (`ubuntu` is `library/ubuntu`).
_OFFICIAL = "library"


def api_host(registry: str) -> str:
    """The host serving `registry`'s API: `registry-1.docker.io` for Docker Hub."""
    return DOCKER_HUB_API if registry in _DOCKER_HUB_ALIASES else registry


def validate_name(name: str) -> str:
    """Raises: InvalidReference if `name` is not a valid repository name."""
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidReference(f"repository name is longer than {MAX_NAME_LENGTH} characters")
    if not NAME_RE.match(name):
        raise InvalidReference(
            f"invalid repository name {name!r}: use lowercase letters, digits and separators "
            "(. _ __ -) in components joined by '/', like 'org/model'"
        )
    return name


def validate_tag(tag: str) -> str:
    """Raises: InvalidReference if `tag` is not a valid tag."""
    if not TAG_RE.match(tag):
        raise InvalidReference(
            f"invalid tag {tag!r}: up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
        )
    return tag


@dataclass(frozen=True)
class Reference:
    registry: str | None
    name: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, value: str) -> Reference:
        """Parse a reference such as `localhost:5000/org/model:rev` or `org/model@sha256:...`.

        Raises:
            InvalidReference: with a message that says which part is wrong.
        """
        if not value or value != value.strip():
            raise InvalidReference(f"invalid reference {value!r}")
        rest, digest = value, None
        if "@" in rest:
            rest, _, digest = rest.partition("@")
            try:
                Digest.parse(digest)
            except ValueError as exc:
                raise InvalidReference(f"invalid reference {value!r}: {exc}") from exc
        registry = None
        first, sep, remainder = rest.partition("/")
        if sep and _HOST_RE.match(first):
            registry, rest = first, remainder
        tag = None
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            validate_tag(tag)
        validate_name(rest)
        return cls(registry, rest, tag, digest)

    @classmethod
    def parse_remote(cls, value: str) -> Reference:
        """Parse a reference to pull from or push to: Docker's defaults fill what is left out.

        No host means Docker Hub (`docker.io`); on Docker Hub a one-component name is an
        official image under `library/`. The tag stays None when absent (`canonical` shows
        `latest`), so callers can still tell "no tag given".

        Raises:
            InvalidReference: as `parse`.
        """
        ref = cls.parse(value)
        registry = ref.registry or DOCKER_HUB
        name = ref.name
        if registry in _DOCKER_HUB_ALIASES:
            registry = DOCKER_HUB
            if "/" not in name:
                name = validate_name(f"{_OFFICIAL}/{name}")
        return cls(registry, name, ref.tag, ref.digest)

    @classmethod
    def remote(cls, ref: str | Reference) -> Reference:
        """`ref` (a string or a Reference) with Docker's defaults filled in: what every entry
        point that talks to a registry goes by (`parse_remote`)."""
        if isinstance(ref, Reference):
            return ref if ref.registry else cls.parse_remote(str(ref))
        return cls.parse_remote(ref)

    @property
    def canonical(self) -> str:
        """The full form Docker shows: `docker.io/library/ubuntu:latest`."""
        ref = self if self.registry else Reference.parse_remote(str(self))
        if ref.tag or ref.digest:
            return str(ref)
        return f"{ref}:{DEFAULT_TAG}"

    @property
    def reference(self) -> str:
        """What goes after `/manifests/` in the API: the digest if any, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        out = f"{self.registry}/{self.name}" if self.registry else self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out
