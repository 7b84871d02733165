"""Basic auth against docker-registry with an htpasswd file, credentials from DOCKER_CONFIG."""

from __future__ import annotations

import json

import pytest

from modelyard.oci.layout import Layout
from modelyard.testing.peers import write_docker_config, write_htpasswd

from .clienttools import run_cli


@pytest.fixture
def locked_registry(docker_registry_factory, tmp_path):
    return docker_registry_factory(write_htpasswd(tmp_path / "htpasswd", "alice", "s3cret"))


def test_push_and_pull_with_docker_config_credentials(locked_registry, model_layout, tmp_path):
    write_docker_config("alice", "s3cret", locked_registry)
    ref = f"{locked_registry}/org/model:v1"
    rc, out, err = run_cli("push", str(model_layout), ref, "--json")
    assert rc == 0, err
    digest = json.loads(out)["digest"]
    rc, out, err = run_cli("pull", ref, "-o", str(tmp_path / "back"), "--json")
    assert rc == 0, err
    assert Layout.open(tmp_path / "back").resolve("v1").digest == digest


def test_wrong_password_exits_4(locked_registry, model_layout):
    write_docker_config("alice", "wrong", locked_registry)
    rc, _, err = run_cli("push", str(model_layout), f"{locked_registry}/org/m:v1", "-q")
    assert rc == 4
    assert "alice" in err and "refused" in err
    assert "Traceback" not in err


def test_no_credentials_exits_4_and_says_how_to_log_in(locked_registry, tmp_path):
    rc, _, err = run_cli("pull", f"{locked_registry}/org/m:v1", "-o", str(tmp_path / "o"))
    assert rc == 4
    assert "no credentials" in err and "login" in err
    assert not (tmp_path / "o").exists()


def test_registry_auth_file_is_read_first(locked_registry, model_layout, tmp_path, monkeypatch):
    write_docker_config("alice", "wrong", locked_registry)
    auth = tmp_path / "auth.json"
    # The containers tools' format, with a scheme-qualified key as some write it.
    entry = {"username": "alice", "password": "s3cret"}
    auth.write_text(json.dumps({"auths": {f"http://{locked_registry}": entry}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    rc, _, err = run_cli("push", str(model_layout), f"{locked_registry}/org/m:v1", "-q")
    assert rc == 0, err
