"""The world a network lives in: its populations and projections, and the task."""
