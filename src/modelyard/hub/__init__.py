"""Hugging Face Hub models as OCI images: import (`modelyard import hf://...`), the name
mapping, and the registry's pull-through."""

from modelyard.hub.importer import HubSettings, HubSource, ImportResult, import_model
from modelyard.hub.names import hf_to_oci, oci_to_hf

__all__ = ["HubSettings", "HubSource", "ImportResult", "hf_to_oci", "import_model", "oci_to_hf"]
