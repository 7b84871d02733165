"""Docker's reference normalisation: the table, and which commands apply it (push and pull
talk to a registry) and which keep a host-less name local (pack -t, import -t)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from modelyard.client.registry import RegistryClient
from modelyard.errors import AuthenticationError, InvalidReference
from modelyard.oci.reference import DOCKER_HUB_API, Reference, api_host

DIGEST = "sha256:" + "ab" * 32

TABLE = [
    # (written, registry, name, tag, digest, canonical)
    ("ubuntu", "docker.io", "library/ubuntu", None, None, "docker.io/library/ubuntu:latest"),
    ("ubuntu:24.04", "docker.io", "library/ubuntu", "24.04", None,
     "docker.io/library/ubuntu:24.04"),
    ("org/name", "docker.io", "org/name", None, None, "docker.io/org/name:latest"),
    ("org/team/name:v1", "docker.io", "org/team/name", "v1", None,
     "docker.io/org/team/name:v1"),
    (f"ubuntu@{DIGEST}", "docker.io", "library/ubuntu", None, DIGEST,
     f"docker.io/library/ubuntu@{DIGEST}"),
    ("docker.io/ubuntu", "docker.io", "library/ubuntu", None, None,
     "docker.io/library/ubuntu:latest"),
    ("index.docker.io/org/name:v2", "docker.io", "org/name", "v2", None,
     "docker.io/org/name:v2"),
    ("registry-1.docker.io/ubuntu", "docker.io", "library/ubuntu", None, None,
     "docker.io/library/ubuntu:latest"),
    ("docker.io/library/ubuntu:latest", "docker.io", "library/ubuntu", "latest", None,
     "docker.io/library/ubuntu:latest"),
    ("localhost/name", "localhost", "name", None, None, "localhost/name:latest"),
    ("localhost:5000/org/model:v1", "localhost:5000", "org/model", "v1", None,
     "localhost:5000/org/model:v1"),
    ("127.0.0.1:5000/model", "127.0.0.1:5000", "model", None, None,
     "127.0.0.1:5000/model:latest"),
    ("ghcr.io/org/model", "ghcr.io", "org/model", None, None, "ghcr.io/org/model:latest"),
    ("host.tld/name", "host.tld", "name", None, None, "host.tld/name:latest"),
    ("myhost:443/name", "myhost:443", "name", None, None, "myhost:443/name:latest"),
    ("[::1]:5000/org/m:v1", "[::1]:5000", "org/m", "v1", None, "[::1]:5000/org/m:v1"),
    (f"ghcr.io/org/m:v1@{DIGEST}", "ghcr.io", "org/m", "v1", DIGEST,
     f"ghcr.io/org/m:v1@{DIGEST}"),
]  # fmt: skip


@pytest.mark.parametrize(("written", "registry", "name", "tag", "digest", "canonical"), TABLE)
def test_normalisation_table(
    written: str,
    registry: str,
    name: str,
    tag: str | None,
    digest: str | None,
    canonical: str,
) -> None:
    ref = Reference.parse_remote(written)
    assert (ref.registry, ref.name, ref.tag, ref.digest) == (registry, name, tag, digest)
    assert ref.canonical == canonical
    # The canonical form is a fixed point, and parses to the same thing without defaults.
    assert Reference.parse_remote(canonical).canonical == canonical
    assert Reference.parse(canonical).registry == registry


def test_parse_keeps_host_less_names_local() -> None:
    assert Reference.parse("org/model:v1") == Reference(None, "org/model", "v1")
    assert Reference.parse("ubuntu") == Reference(None, "ubuntu")
    assert Reference.parse("ubuntu").canonical == "docker.io/library/ubuntu:latest"


@pytest.mark.parametrize(
    "bad", ["", "Ubuntu", "org/Name", "docker.io/", "a//b", "org/name:", ":tag", "name@sha256:12"]
)
def test_invalid_references_stay_invalid(bad: str) -> None:
    with pytest.raises(InvalidReference):
        Reference.parse_remote(bad)


def test_api_host() -> None:
    assert api_host("docker.io") == DOCKER_HUB_API == "registry-1.docker.io"
    assert api_host("index.docker.io") == DOCKER_HUB_API
    assert api_host("localhost:5000") == "localhost:5000"
    from modelyard.client import RegistryClient

    for hub in ("docker.io", "index.docker.io"):
        with RegistryClient(hub) as client:
            assert client.base == "https://registry-1.docker.io"


# Which commands apply the defaults, checked without a network: the library call is replaced.


def test_push_and_pull_complete_the_reference(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib

    from modelyard.cli.transfer import pull, push

    # `modelyard.client` re-exports functions named like these modules.
    push_module = importlib.import_module("modelyard.client.push")
    pull_module = importlib.import_module("modelyard.client.pull")

    seen: list[str] = []

    class Stop(Exception):
        pass

    def record(*args: object, **kwargs: object) -> None:
        seen.append(str(args[1] if args[0] == str(tmp_path) else args[0]))
        raise Stop

    monkeypatch.setattr(push_module, "push", record)
    monkeypatch.setattr(pull_module, "pull", record)
    runner = CliRunner()
    for command, args in [
        (push, [str(tmp_path), "org/m:v1"]),
        (push, [str(tmp_path), "localhost:5000/org/m:v1"]),
        (pull, ["ubuntu", "-o", str(tmp_path / "out")]),
        (pull, ["ghcr.io/org/m@" + DIGEST, "-o", str(tmp_path / "out")]),
    ]:
        result = runner.invoke(command, args)
        assert isinstance(result.exception, Stop), result.output
    assert seen == [
        "docker.io/org/m:v1",
        "localhost:5000/org/m:v1",
        "docker.io/library/ubuntu",
        f"ghcr.io/org/m@{DIGEST}",
    ]
    bad = runner.invoke(pull, ["Org/M", "-o", str(tmp_path / "out")])
    assert bad.exit_code == 2 and "invalid repository name" in bad.output


def test_pack_tag_without_a_host_stays_a_local_name(tmp_path: Path) -> None:
    """`pack -t ubuntu` names a layout; it must not turn into library/ubuntu on Docker Hub."""
    from modelyard.cli.pack import default_layout_dir

    assert default_layout_dir(Reference.parse("ubuntu")).name == "ubuntu"
    assert default_layout_dir(Reference.parse("org/m:v1")).name == "org_m"


def _recording_client(paths: list[str]) -> RegistryClient:
    """A Docker Hub client whose every request is recorded and refused (401, no challenge)."""

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(401)

    return RegistryClient("docker.io", transport=httpx.MockTransport(handler), retries=0)


def test_library_entry_points_apply_docker_defaults(model_layout: Path, tmp_path: Path) -> None:
    """pull, push_layout (and so `pack --push`) and lazy access all read `ubuntu` as
    docker.io/library/ubuntu, as the push/pull commands do; a host:port stays as it is."""
    from modelyard.client.pull import pull
    from modelyard.client.push import push_layout
    from modelyard.lazy.image import RemoteImage

    assert Reference.remote("ubuntu") == Reference("docker.io", "library/ubuntu")
    assert Reference.remote(Reference(None, "org/m", "v1")) == Reference("docker.io", "org/m", "v1")
    local = Reference("localhost:5000", "x", "v1")
    assert Reference.remote(local) is local
    assert Reference.remote("127.0.0.1:5000/x:v1").registry == "127.0.0.1:5000"

    for call in (
        lambda c: pull("ubuntu", tmp_path / "out", client=c),
        lambda c: push_layout(model_layout, "v1", "ubuntu", client=c),
        lambda c: RemoteImage("ubuntu", client=c).digest,
    ):
        paths: list[str] = []
        with pytest.raises(AuthenticationError):
            call(_recording_client(paths))
        assert paths and all(p.startswith("/v2/library/ubuntu/") for p in paths), paths
