"""The batched executor."""
