"""What guidance buys: held-out accuracy against backward (error) messages, with and without guides.

Runs the built-in ``digits-guide-direct`` scenario (64-64-10, the propagated error every 4th
tick, confidence meta unless ``--meta`` says otherwise) with no guide, and with tree, linear and mlp guides under direct, hash
and tree coupling, for several seeds, on the batched executor.  Every run has the same ticks
and sends the same error messages; the table gives the final held-out accuracy (mean and
range over seeds), the error messages, the guides' held-out R^2 and mean alpha, and the
wall time.  ``--every`` changes the error's spacing (1 = every tick).

    python benchmarks/guided_learning.py                 # 5 seeds
    python benchmarks/guided_learning.py --seeds 2 --every 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import ribbed

COUPLINGS = {"direct": {"kind": "direct"}, "hash": {"kind": "hash", "bits": 3, "rehash_every": 50},
             "tree": {"kind": "tree", "leaf_size": 8, "reorder_every": 50}}
GUIDES = {"tree": {"kind": "tree"}, "linear": {"kind": "linear"}, "mlp": {"kind": "mlp", "hidden": 16, "lr": 0.01}}


def configuration(guide: str | None, coupling: str | None, seed: int, every: int, ticks: int, meta: str) -> dict:
    data = ribbed.load_scenario("digits-guide-direct").model_dump(exclude_none=True)
    data.update(seed=seed, backend={"kind": "batched", "device": "cpu"}, schedule={"backward_every": every})
    data["run"]["ticks"] = ticks
    if guide is None:
        data["populations"][1].pop("guide")
        data.pop("coupling"), data.pop("meta")
    else:
        data["populations"][1]["guide"] = GUIDES[guide]
        data["coupling"] = COUPLINGS[coupling]
        data["meta"] = {"kind": meta}
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--every", type=int, default=4, help="schedule.backward_every")
    parser.add_argument("--ticks", type=int, default=800)
    parser.add_argument("--meta", default="confidence", choices=["confidence", "learned", "fixed"])
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/guided_learning.json"))
    args = parser.parse_args()
    cases = [(None, None)] + [(g, c) for c in COUPLINGS for g in GUIDES]
    rows = []
    print(f"{'coupling':8} {'guide':6} {'accuracy':>9} {'(min-max)':>15} {'error msgs':>11} {'R2':>6} "
          f"{'alpha':>6} {'s/run':>6}")
    for guide, coupling in cases:
        accuracy, r2, alpha, errors, seconds = [], [], [], [], []
        for seed in range(args.seeds):
            start = time.perf_counter()
            metrics = ribbed.NetworkModel(configuration(guide, coupling, seed, args.every, args.ticks, args.meta)).run()
            seconds.append(time.perf_counter() - start)
            accuracy.append(metrics["test_accuracy"].iloc[-1])
            errors.append(int(metrics["msg_error"].sum()))
            if guide is not None:
                r2.append(metrics["hidden_guide_r2"].iloc[-1])
                alpha.append(metrics["hidden_alpha_mean"].iloc[-1])
        row = {"coupling": coupling or "none", "guide": guide or "-", "accuracy": float(np.mean(accuracy)),
               "accuracy_min": float(np.min(accuracy)), "accuracy_max": float(np.max(accuracy)),
               "error_messages": errors[0], "guide_r2": float(np.mean(r2)) if r2 else float("nan"),
               "alpha_mean": float(np.mean(alpha)) if alpha else float("nan"), "seconds": float(np.median(seconds))}
        assert len(set(errors)) == 1, "every run sends the same error messages"
        rows.append(row)
        print(f"{row['coupling']:8} {row['guide']:6} {row['accuracy']:9.4f} "
              f"({row['accuracy_min']:.4f}-{row['accuracy_max']:.4f}) {row['error_messages']:11d} "
              f"{row['guide_r2']:6.2f} {row['alpha_mean']:6.2f} {row['seconds']:6.1f}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"seeds": args.seeds, "backward_every": args.every, "ticks": args.ticks,
                                     "meta": args.meta,
                                     "rows": rows}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
