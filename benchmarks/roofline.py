"""Machine ceilings for the benchmark: memory bandwidth and matmul throughput.

A benchmark number means little without the roof it sits under. These two
probes measure, with torch on the device at hand, the sustained memory
bandwidth (a STREAM-style triad) and the dense matmul throughput, so a
program's time can be compared with what the hardware could have done.
"""

from __future__ import annotations

import statistics
import time

import torch


def _sync(device: str) -> None:
    """Wait for queued kernels, so wall-clock time covers the work itself."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _median_seconds(fn, device: str, repeats: int) -> float:
    """Median wall time of ``fn`` after one warm-up call; the median resists noise."""
    fn()  # warm-up: allocator, kernel selection, page faults
    _sync(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def stream_triad(
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    n: int | None = None,
    repeats: int = 7,
) -> float:
    """Median bandwidth in GB/s of the triad ``a = b + s*c``.

    The arrays are large enough to defeat the caches, so the time is set by
    main memory. Bytes are counted as STREAM does: three arrays of ``n``
    elements per triad (read b, read c, write a), ignoring write-allocate.
    """
    if n is None:
        n = 2**28 if torch.device(device).type == "cuda" else 2**25
    a = torch.empty(n, dtype=dtype, device=device)
    b = torch.rand(n, dtype=dtype, device=device)
    c = torch.rand(n, dtype=dtype, device=device)
    s = 3.0

    def triad() -> None:
        torch.add(b, c, alpha=s, out=a)

    seconds = _median_seconds(triad, device, repeats)
    nbytes = 3 * a.element_size() * n
    return nbytes / seconds / 1e9


def matmul_peak(
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    n: int | None = None,
    repeats: int = 7,
) -> float:
    """Median GFLOP/s of an ``n``×``n`` @ ``n``×``n`` matmul (2n³ flops).

    A large square matmul is the most compute-bound thing torch does, so it
    is a practical stand-in for the device's arithmetic peak.
    """
    if n is None:
        n = 8192 if torch.device(device).type == "cuda" else 2048
    a = torch.rand(n, n, dtype=dtype, device=device)
    b = torch.rand(n, n, dtype=dtype, device=device)
    out = torch.empty(n, n, dtype=dtype, device=device)

    def mm() -> None:
        torch.matmul(a, b, out=out)

    seconds = _median_seconds(mm, device, repeats)
    return 2.0 * n**3 / seconds / 1e9


if __name__ == "__main__":
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for dev in devices:
        for dt in (torch.float32, torch.float64):
            bw = stream_triad(dev, dt)
            fl = matmul_peak(dev, dt)
            print(f"{dev:5s} {str(dt):14s} triad {bw:8.1f} GB/s   matmul {fl:10.1f} GFLOP/s")
