"""Shared test settings: warnings are errors (pyproject), seeds fixed, helpers in tests/helpers.py."""
