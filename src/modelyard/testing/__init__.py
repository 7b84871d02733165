"""Helpers for tests and demos: tiny real models generated offline."""

from modelyard.testing.tiny import ARCHES, TASKS, make_tiny_model

__all__ = ["ARCHES", "TASKS", "make_tiny_model"]
