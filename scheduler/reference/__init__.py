"""The reference executor (see executor.py)."""

from ribbed.scheduler.registry import register

register("reference", "ribbed.scheduler.reference.executor:ReferenceExecutor")
