"""Torch settings that make a run repeat bit for bit on the same executor and device.

Floating-point sums can change with the number of threads that compute them, and some GPU
kernels are nondeterministic; a run therefore fixes torch's thread counts (``backend.threads``,
or the default that fits the cores this process can use, :mod:`ribbed.resources`) and asks for
deterministic algorithms, and records both in its log so that a replay uses the same settings.
"""

from __future__ import annotations

import torch

from ribbed.resources import plan_cores

__all__ = ["configure_torch"]


def configure_torch(threads: int | None = None, interop_threads: int | None = None, *,
                    cores: int | None = None) -> dict:
    """Set torch's intra-op and inter-op thread counts and deterministic algorithms; return the
    settings in force, as a log's header records them.  A count not given is the default for
    ``cores`` (default: the cores available, :func:`ribbed.resources.plan_cores`), so that torch
    never starts more threads than the process can run at once."""
    if threads is None or interop_threads is None:
        plan = plan_cores(cores)
        threads = plan.torch_threads if threads is None else threads
        interop_threads = plan.interop_threads if interop_threads is None else interop_threads
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != interop_threads:
        try:
            torch.set_num_interop_threads(interop_threads)
        except RuntimeError:  # only settable before torch's first parallel work; recorded as it is
            pass
    # warn_only: an operation without a deterministic implementation warns instead of failing.
    # torch.use_deterministic_algorithms also imports torch._inductor to set its config (1-2 s per
    # process; ribbed does not compile), so the flag is set directly where torch exposes it.
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is not None:
        setter(True, warn_only=True)
    else:  # pragma: no cover - a torch without the internal setter
        torch.use_deterministic_algorithms(True, warn_only=True)
    return {"torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}
