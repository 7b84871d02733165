"""The compiled parts: optional x86 modules for SHA-256 (SHA extensions) and CRC-32 (PCLMULQDQ).

Everything else is in pyproject.toml. `optional=True`: without a C compiler the install still
succeeds and modelyard falls back to hashlib and zlib (same values, slower).
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
    ext_modules.append(
        Extension(
            "modelyard._crc32",
            ["src/modelyard/_crc32.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules)
