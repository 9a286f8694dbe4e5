"""Torch settings that make a run repeat bit for bit on the same executor and device.

Floating-point sums can change with the number of threads that compute them, and some GPU
kernels are nondeterministic; a run therefore fixes torch's thread counts (``backend.threads``,
or the count torch chose) and asks for deterministic algorithms, and records both in its log so
that a replay uses the same settings.
"""

from __future__ import annotations

import torch

__all__ = ["configure_torch"]


def configure_torch(threads: int | None = None, interop_threads: int | None = None) -> dict:
    """Set torch's intra-op thread count (when given) and deterministic algorithms; return the
    settings in force, as a log's header records them."""
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if interop_threads is not None and torch.get_num_interop_threads() != interop_threads:
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
