"""Pipelines: what turns a request payload into model inputs and model outputs into a result."""

from __future__ import annotations

from modelyard.serve.pipelines.base import Pipeline, Prepared

__all__ = ["Pipeline", "Prepared"]
