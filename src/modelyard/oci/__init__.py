"""The OCI core: digests, descriptors, manifests, tar and compressed layer writers, layouts.

Nothing here speaks HTTP; the registry, the client, the packer and the runner build on it.
"""

from modelyard.oci.descriptor import Descriptor, Platform
from modelyard.oci.digest import Digest
from modelyard.oci.layout import Layout
from modelyard.oci.manifest import ImageConfig, ImageIndex, ImageManifest, parse_manifest
from modelyard.oci.reference import Reference

__all__ = [
    "Descriptor",
    "Digest",
    "ImageConfig",
    "ImageIndex",
    "ImageManifest",
    "Layout",
    "Platform",
    "Reference",
    "parse_manifest",
]
