"""What coupling costs: guide lookup and update per neuron, and guide memory, against n.

For each coupling (direct, hash, tree) and stackable guide kind (linear, mlp) it builds a
network with one guided hidden population of n neurons (1e3 to 1e6) on the batched executor,
then times the real guide stage (:meth:`BatchedGuidance.guide_stage`: features, the guides'
predictions along every neuron's path, and their update from the credit) on ticks without
regrouping, and separately the regrouping itself.  Times are medians of repeats after warm-up;
memory is the bytes of the guides' tensors.  Expected shapes: per neuron, tree grows like its
depth (log n), hash stays flat, and direct's memory grows linearly with n.

    python benchmarks/coupling_cost.py            # 1e3 .. 1e6
    python benchmarks/coupling_cost.py --quick    # 1e3 .. 1e5
    python benchmarks/coupling_cost.py --quick --identity readout,weights   # with identity features

With ``--identity`` the guides see identity features (docs/semantics.md, "Guided learning"), and
the timed stage includes reading the outgoing weights for them, as the executor does every tick.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import ribbed

COUPLINGS = {
    "direct": {"kind": "direct"},
    "hash": {"kind": "hash", "bits": 4, "rehash_every": 1000},
    "tree": {"kind": "tree", "leaf_size": 8, "reorder_every": 1000},
}
GUIDES = {"linear": {"kind": "linear"}, "mlp": {"kind": "mlp", "hidden": 8}}
BATCH = 4


def scenario(n: int, coupling: dict, guide: dict, data: Path) -> dict:
    return {
        "name": "coupling-cost", "seed": 0,
        "task": {"kind": "npz", "path": str(data), "problem": "classification", "loss": "cross_entropy"},
        "populations": [{"name": "in", "size": 2, "role": "input"},
                        {"name": "hidden", "size": n, "guide": guide},
                        {"name": "out", "size": 2, "role": "output", "activation": "identity"}],
        "projections": [{"pre": "in", "post": "hidden"}, {"pre": "hidden", "post": "out"}],
        "coupling": coupling,
        "run": {"ticks": 1, "batch_size": BATCH},
        "backend": {"kind": "batched", "device": "cpu"},
    }


def state_bytes(guidance) -> int:
    guides = guidance.guides
    tensors = list(guides.state().values())
    tensors += list(getattr(guides, "exp_avg", {}).values()) + list(getattr(guides, "exp_avg_sq", {}).values())
    return sum(t.numel() * t.element_size() for t in tensors)


def measure(n: int, coupling: str, guide: str, data: Path, repeats: int, identity: tuple[str, ...] = ()) -> dict:
    spec = {**GUIDES[guide], **({"identity": list(identity)} if identity else {})}
    model = ribbed.NetworkModel(scenario(n, COUPLINGS[coupling], spec, data))
    executor = model.executor
    guidance = executor.populations["hidden"].guidance

    def stage(tick: int) -> None:
        guidance.see_weights(executor._weights_of)
        guidance.guide_stage(tick, u, y, derivative, context, delta)

    rng = torch.Generator().manual_seed(0)
    u = torch.randn(BATCH, n, generator=rng)
    y = torch.tanh(u)
    derivative = 1 - y * y
    context = torch.rand(BATCH, guidance.guided.n_context, generator=rng)
    delta = torch.randn(BATCH, n, generator=rng) * 1e-2
    with torch.no_grad():
        start = time.perf_counter()
        stage(0)  # tick 0 regroups
        regroup = time.perf_counter() - start
        for _ in range(2):
            stage(1)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            stage(1)
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"n": n, "coupling": coupling, "guide": guide, "identity": list(identity), "depth": guidance.coupling.depth,
            "guides": guidance.coupling.n_guides, "stage_s": median, "ns_per_neuron": median / n * 1e9,
            "first_tick_s": regroup, "guide_bytes": state_bytes(guidance), "bytes_per_neuron": state_bytes(guidance) / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes up to 1e5")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--identity", default="", help="identity features of the guides, e.g. readout,weights")
    parser.add_argument("--json", type=Path, default=None,
                        help="default: benchmarks/results/coupling_cost[-identity].json")
    args = parser.parse_args()
    identity = tuple(name for name in args.identity.split(",") if name)
    if args.json is None:
        args.json = Path(f"benchmarks/results/coupling_cost{'-' + '-'.join(identity) if identity else ''}.json")
    sizes = [10**3, 10**4, 10**5] + ([] if args.quick else [10**6])
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "two.npz"
        X = np.random.default_rng(0).standard_normal((64, 2))
        np.savez(data, X_train=X, y_train=np.arange(64) % 2, X_test=X, y_test=np.arange(64) % 2)
        print(f"{'guide':6} {'coupling':8} {'n':>9} {'depth':>5} {'guides':>8} {'stage ms':>10} {'ns/neuron':>10}"
              f" {'first tick ms':>13} {'guide MB':>9} {'B/neuron':>9}")
        for guide in GUIDES:
            for coupling in COUPLINGS:
                for n in sizes:
                    row = measure(n, coupling, guide, data, args.repeats, identity)
                    rows.append(row)
                    print(f"{guide:6} {coupling:8} {n:9d} {row['depth']:5d} {row['guides']:8d} "
                          f"{row['stage_s'] * 1e3:10.2f} {row['ns_per_neuron']:10.1f} {row['first_tick_s'] * 1e3:13.1f} "
                          f"{row['guide_bytes'] / 2**20:9.1f} {row['bytes_per_neuron']:9.1f}", flush=True)
    print("\nper-neuron cost, largest n against 1e3:")
    for guide in GUIDES:
        for coupling in COUPLINGS:
            cases = [r for r in rows if r["guide"] == guide and r["coupling"] == coupling]
            print(f"  {guide:6} {coupling:8} x{cases[-1]['ns_per_neuron'] / cases[0]['ns_per_neuron']:.2f} "
                  f"(depth {cases[0]['depth']} -> {cases[-1]['depth']})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": platform.platform(), "threads": torch.get_num_threads(),
                                     "batch": BATCH, "identity": list(identity), "rows": rows}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
