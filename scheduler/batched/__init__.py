"""The batched executor (see executor.py)."""

from ribbed.scheduler.registry import register

register("batched", "ribbed.scheduler.batched.executor:BatchedExecutor")
