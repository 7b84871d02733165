"""The one compiled part: an optional SHA-256 module for x86 SHA extensions.

Everything else is in pyproject.toml. `optional=True`: without a C compiler the install still
succeeds and modelyard.oci.sha256 falls back to hashlib.
"""

import platform

from setuptools import Extension, setup

ext_modules = []
if platform.machine().lower() in ("x86_64", "amd64"):
    ext_modules.append(
        Extension(
            "modelyard._sha256ni",
            ["src/modelyard/_sha256ni.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules)
