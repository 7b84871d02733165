"""Export, quantize and bundle models for the slim runner (needs the `export` extra)."""
