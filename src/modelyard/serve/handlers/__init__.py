"""HTTP handlers of the runner, one module per API area. Thin: parse, call `Runner`, format."""
