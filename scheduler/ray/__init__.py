"""The ray executor (see executor.py)."""

from ribbed.scheduler.registry import register

register("ray", "ribbed.scheduler.ray.executor:RayExecutor")
