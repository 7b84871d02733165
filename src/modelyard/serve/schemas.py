"""Request and response schemas of each configured model, for the OpenAPI document.

Built-in pipelines have fixed schemas; a custom pipeline's come from the type hints of its
predict method (the class is imported, not instantiated).
"""

from __future__ import annotations

from typing import Any

from modelyard.serve.config import ServeConfig
from modelyard.serve.openapi import ModelSchema


def model_schemas(config: ServeConfig) -> list[ModelSchema]:
    from modelyard.serve.pipelines.feature_extraction import FeatureExtraction
    from modelyard.serve.pipelines.text_classification import TextClassification

    out = []
    for model in config.models:
        if model.pipeline == "feature-extraction":
            cls: Any = FeatureExtraction
        elif model.pipeline == "text-classification" or not model.is_custom:
            cls = TextClassification
        else:
            out.append(_custom_schema(model.name, model.pipeline or ""))
            continue
        out_schema = cls.output_schema
        if model.pipeline is None:  # the task is known once the files are read
            out_schema = {
                "anyOf": [TextClassification.output_schema, FeatureExtraction.output_schema]
            }
        out.append(ModelSchema(model.name, model.pipeline or "auto", cls.input_schema, out_schema))
    return out


def _custom_schema(name: str, spec: str) -> ModelSchema:
    from modelyard.errors import ModelRefError
    from modelyard.serve.custom import import_class, signature_types
    from modelyard.serve.typeschema import json_schema

    try:
        in_type, out_type, _batched = signature_types(import_class(spec))
        components: dict[str, Any] = {}
        return ModelSchema(
            name,
            "custom",
            json_schema(in_type, components),
            json_schema(out_type, components),
            components,
        )
    except (ModelRefError, TypeError):
        return ModelSchema(name, "custom", {}, {})  # the load will report the error
