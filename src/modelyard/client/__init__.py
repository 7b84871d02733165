"""A client for OCI registries: push and pull images, blobs and byte ranges.

Works against any distribution-spec registry (modelyard's own, CNCF distribution, GHCR, ...)
with the credentials `docker login` / `skopeo login` store.
"""

from modelyard.client.pull import PullResult, pull
from modelyard.client.push import PushResult, push, push_layout
from modelyard.client.registry import RegistryClient

__all__ = ["PullResult", "PushResult", "RegistryClient", "pull", "push", "push_layout"]
