"""The OCI Distribution registry: storage service, HTTP handlers, auth and garbage collection.

This package's `__init__` imports no HTTP library, so the client can use `errcodes`.
"""
