"""The reference executor."""
