"""The ray executor."""
