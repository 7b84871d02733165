"""Packing model directories into reproducible OCI images."""

from modelyard.pack.packer import PackOptions, PackResult, pack

__all__ = ["PackOptions", "PackResult", "pack"]
