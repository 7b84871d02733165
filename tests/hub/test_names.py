"""The hub-name <-> OCI-name mapping: examples, round trip, refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelyard.errors import InvalidReference
from modelyard.hub.names import (
    component_to_hf,
    component_to_oci,
    hf_to_oci,
    oci_to_hf,
    revision_to_tag,
    tag_to_revision,
)
from modelyard.oci.reference import NAME_RE, Reference


@pytest.mark.parametrize(
    ("hub", "oci"),
    [
        ("openai-community/gpt2", "openai-community/gpt2"),
        ("Qwen/Qwen2.5-7B", "qwen--u0/qwen2.5-7b--u0.9"),
        ("meta-llama/Llama-3.1-8B", "meta-llama/llama-3.1-8b--u0.11"),
        (
            "sentence-transformers/all-MiniLM-L6-v2",
            "sentence-transformers/all-minilm-l6-v2--u4.8-9.11",
        ),
        ("BAAI/bge-small-en-v1.5", "baai--u0-3/bge-small-en-v1.5"),
        ("gpt2", "gpt2"),
        ("TheBloke/Llama-2-7B-GGUF", "thebloke--u0.3/llama-2-7b-gguf--u0.9.11-14"),
    ],
)
def test_examples(hub: str, oci: str) -> None:
    assert hf_to_oci(hub) == oci
    assert oci_to_hf(oci) == hub
    Reference.parse(f"localhost:5000/hf/{oci}:main")  # a valid reference


# Hub name components: letters, digits and separators, starting and ending with an
# alphanumeric, one separator at a time (the subset with an OCI form).
_word = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=8
)
_component = st.builds(
    lambda first, rest: first + "".join(sep + w for sep, w in rest),
    _word,
    st.lists(st.tuples(st.sampled_from([".", "_", "-", "__"]), _word), max_size=4),
)


@given(_component, _component)
def test_round_trip(org: str, name: str) -> None:
    repo_id = f"{org}/{name}"
    oci = hf_to_oci(repo_id)
    assert NAME_RE.match(oci)
    assert oci == oci.lower()
    assert oci_to_hf(oci) == repo_id
    if repo_id == repo_id.lower():
        assert oci == repo_id  # lower-case names are unchanged


@given(st.text("abcdefgh0123456789.-u", min_size=1, max_size=16))
def test_decode_accepts_only_canonical_forms(component: str) -> None:
    try:
        hub = component_to_hf(component)
    except InvalidReference:
        return
    assert component_to_oci(hub) == component


@pytest.mark.parametrize(
    "bad",
    [
        "qwen--u01",
        "qwen--u",
        "qwen--u0.0",
        "qwen--u1.0",
        "qwen--x0",
        "qwen--u0-1.1",
        "qwen--u9",
        "q2--u1",
    ],
)
def test_non_canonical_suffixes_are_refused(bad: str) -> None:
    with pytest.raises(InvalidReference):
        component_to_hf(bad)


@pytest.mark.parametrize("bad", ["a--b", "a..b", "_a", "a___b", "a-.b", "a/b/c", "", "é"])
def test_hub_names_without_oci_form_are_refused(bad: str) -> None:
    with pytest.raises(InvalidReference):
        hf_to_oci(bad)


def test_revisions_and_tags() -> None:
    assert tag_to_revision("latest") == "main"
    assert tag_to_revision("v1.0") == "v1.0"
    assert revision_to_tag("main") == "main"
    assert revision_to_tag("a" * 40) == "a" * 40
    with pytest.raises(InvalidReference, match="-t NAME:TAG"):
        revision_to_tag("refs/pr/1")
