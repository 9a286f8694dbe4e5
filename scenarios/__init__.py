"""Scenarios: the schema, the YAML loader, and the built-in scenarios (``builtin/``)."""
