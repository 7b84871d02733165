"""Export, quantize and bundle models for the slim runner (needs the `export` extra).

Example:
    >>> from modelyard.optimize import optimize
    >>> result = optimize("./all-MiniLM-L6-v2", "./minilm-int8", "feature-extraction")
    >>> result.manifest.fidelity["min_cosine"] >= 0.95
    True

torch and transformers are imported only when a model is loaded.
"""

from modelyard.optimize.fidelity import FidelityBar
from modelyard.optimize.pipeline import OptimizeResult, export_bundle, optimize

__all__ = ["FidelityBar", "OptimizeResult", "export_bundle", "optimize"]
