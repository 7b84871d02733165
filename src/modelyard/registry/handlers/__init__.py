"""HTTP handlers of the registry, one module per API area."""
