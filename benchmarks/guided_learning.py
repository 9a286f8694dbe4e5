"""What guidance buys, against fair controls: held-out accuracy of guided learning and of three
unguided controls, as mean and 95% CI over seeds, every run through ``ribbed.sweep``.

The built-in ``digits-guide-direct`` scenario (64-64-10, the propagated error every 4th tick,
confidence meta unless ``--meta`` says otherwise), on the batched executor (CPU):

- **guided**: tree, linear and mlp guides under direct, hash and tree coupling, at the
  scenario's learning rate (0.02), and again at the hidden learning rate chosen for control (a)
  ("tuned lr": borrowed from the unguided selection, not tuned for the guides themselves);
- **unguided, same lr**: no guide, the same learning rate (the comparison the old table made);
- **(a) unguided, tuned lr**: no guide, the hidden population's learning rate the best of
  0.02 x {1, 2, 4, ..., 256} (the output's stays 0.02; the table flags a best at the grid's edge);
- **(b) broadcast**: no guide, and ``broadcast: dfa`` (docs/semantics.md, "Broadcast credit"):
  on ticks without propagated error the hidden neurons learn from the label and surprise the
  guides see, through a fixed random matrix; its hidden learning rate tuned the same way;
- **(c) error every tick**: no guide, ``backward_every: 1`` (the upper bound), tuned the same way.

The learning rates are chosen on *selection seeds* (100, 101, ...) that are not the seeds the
table reports, so the controls are not flattered by picking the best of four on the reported
seeds.  Each guided configuration is then compared with each control by Welch's t-test on the
final held-out accuracy over the reported seeds: "better" or "worse" where p < 0.05, "no
difference" otherwise.

The runs of each family are one ``ribbed.sweep`` (grid x seeds, in parallel, resumable) in a
folder under ``benchmarks/results/`` named by the settings, so running the same command again
continues where it stopped; the table is read from each ``sweep.parquet`` (s/run from each
run's summary.json: the table holds no timings).  The summary JSON is written beside it.

    python benchmarks/guided_learning.py --quick   # 3 seeds, mlp and linear direct, 400 ticks: 45-90 s on 2 cores
    python benchmarks/guided_learning.py           # 5 seeds, all 9 guided configurations, 800 ticks, each at
                                                   # two lrs: 90 guided runs (direct tree guides 35-45 s each,
                                                   # hash/tree-coupled ones 11-16 s); 15 min with --workers 1
    python benchmarks/guided_learning.py --no-tuned-guides   # the guides at the scenario's lr only (45 runs)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

import ribbed

COUPLINGS = {"direct": {"kind": "direct"}, "hash": {"kind": "hash", "bits": 3, "rehash_every": 50},
             "tree": {"kind": "tree", "leaf_size": 8, "reorder_every": 50}}
GUIDES = {"tree": {"kind": "tree"}, "linear": {"kind": "linear"}, "mlp": {"kind": "mlp", "hidden": 16, "lr": 0.01}}
#: The unguided control families: label, changes to the unguided scenario.
CONTROLS = {"unguided": {}, "broadcast": {"populations.hidden.broadcast": "dfa"},
            "every tick": {"schedule.backward_every": 1}}
LR_FIELD = "populations.hidden.learning.lr"
#: Welch's p below which a difference is called.
ALPHA = 0.05


@dataclass
class Plan:
    """Everything that decides the runs (and so the results folder's name)."""

    seeds: list[int]
    selection_seeds: list[int]
    ticks: int
    eval_every: int
    every: int
    meta: str
    guided: list[tuple[str, str]]  # (guide, coupling)
    lr_factors: list[float] = field(default_factory=lambda: [2**k for k in range(9)])
    #: Also run the guided configurations at control a's tuned lr (doubles the guided runs).
    tuned_guides: bool = True

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def quick_plan(every: int = 4, meta: str = "confidence") -> Plan:
    return Plan(seeds=[0, 1, 2], selection_seeds=[100, 101], ticks=400, eval_every=100, every=every, meta=meta,
                guided=[("mlp", "direct"), ("linear", "direct")])


def full_plan(seeds: int = 5, every: int = 4, meta: str = "confidence", ticks: int = 800) -> Plan:
    return Plan(seeds=list(range(seeds)), selection_seeds=[100, 101, 102], ticks=ticks, eval_every=100, every=every,
                meta=meta, guided=[(g, c) for c in COUPLINGS for g in GUIDES])


# --------------------------------------------------------------------------- the sweeps


def base_scenario(plan: Plan, guided: bool) -> dict:
    """digits-guide-direct on the batched CPU executor with the plan's length and error spacing;
    without its guide, coupling and meta when not ``guided``.  No message log (not needed here)."""
    data = ribbed.load_scenario("digits-guide-direct").model_dump(mode="json", exclude_none=True)
    data.update(backend={"kind": "batched", "device": "cpu"}, schedule={"backward_every": plan.every},
                log={"level": "off"}, output={"agent_metrics": False})
    data["run"].update(ticks=plan.ticks, eval_every=plan.eval_every)
    if guided:
        data["meta"] = {"kind": plan.meta}
    else:
        data["populations"][1].pop("guide")
        data.pop("coupling"), data.pop("meta")
    return data


def scenario_lr() -> float:
    """The learning rate of digits-guide-direct (the guides' own)."""
    return ribbed.load_scenario("digits-guide-direct").learning.lr


def control_sweeps(plan: Plan) -> dict[str, dict[str, Any]]:
    """Each control family's ``ribbed.sweep`` arguments: the scenario, grid (its changes, and the
    hidden learning rate over the plan's factors) and seeds (reported and selection)."""
    lrs = [scenario_lr() * f for f in plan.lr_factors]
    return {label: {"scenario": base_scenario(plan, False), "seeds": plan.seeds + plan.selection_seeds,
                    "grid": {**{k: [v] for k, v in changes.items()}, LR_FIELD: lrs}}
            for label, changes in CONTROLS.items()}


def guided_sweep(plan: Plan, tuned_lr: float) -> dict[str, Any]:
    """The guided configurations' sweep: every guide x coupling of the plan, at the scenario's
    learning rate and at ``tuned_lr`` (the one chosen for control a), on the reported seeds."""
    guides = list(dict.fromkeys(g for g, _ in plan.guided))
    couplings = list(dict.fromkeys(c for _, c in plan.guided))
    lrs = list(dict.fromkeys([scenario_lr(), tuned_lr] if plan.tuned_guides else [scenario_lr()]))
    return {"scenario": base_scenario(plan, True), "seeds": plan.seeds,
            "grid": {"populations.hidden.guide": [GUIDES[g] for g in guides],
                     "coupling": [COUPLINGS[c] for c in couplings], LR_FIELD: lrs}}


def run_sweeps(plan: Plan, folder: Path, workers: int | None) -> dict[str, pd.DataFrame]:
    """Run (or continue) every family's sweep in ``folder``, the controls first (the guided runs
    use control a's chosen learning rate too); each one's final rows, one per run."""
    frames = {}
    for label, arguments in control_sweeps(plan).items():
        frames[label] = _sweep(label, arguments, folder, workers)
    frames["guided"] = _sweep("guided", guided_sweep(plan, choose_lr(frames["unguided"], plan)), folder, workers)
    return frames


def _sweep(label: str, arguments: dict[str, Any], folder: Path, workers: int | None) -> pd.DataFrame:
    began = time.perf_counter()
    result = ribbed.sweep(arguments["scenario"], seeds=arguments["seeds"], grid=arguments["grid"],
                          out=folder / label.replace(" ", "-"), workers=workers)
    if result.failed:
        raise SystemExit(f"{label}: {len(result.failed)} runs failed, first: {result.failed[0].name} "
                         f"({result.failed[0].error})")
    rows = final_rows(result.frame, result.directory)
    print(f"  swept {label}: {len(rows)} runs in {time.perf_counter() - began:.0f} s", flush=True)
    return rows


def final_rows(frame: pd.DataFrame, directory: Path) -> pd.DataFrame:
    """One row per run: its last evaluation, its messages summed over evaluations, and its wall time
    (from the run's summary.json)."""
    frame = frame.sort_values(["point", "tick"])
    last = frame.groupby("point", sort=False).tail(1).set_index("point")
    for kind in ("error", "target"):
        column = f"msg_{kind}"
        last[column] = frame.groupby("point")[column].sum() if column in frame else 0
    last["seconds"] = [json.loads((directory / point / "summary.json").read_text())["seconds"] for point in last.index]
    return last.reset_index()


# --------------------------------------------------------------------------- the table


def interval(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (NaN for one value)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))


def describe(label: str, runs: pd.DataFrame, **extra: Any) -> dict:
    accuracy = runs["test_accuracy"].to_numpy()
    mean, half = interval(accuracy)
    errors = sorted(set(runs["msg_error"].astype(int)))
    row = {"label": label, **extra, "seeds": [int(s) for s in runs["seed"]], "accuracy": [float(a) for a in accuracy],
           "accuracy_mean": mean, "accuracy_ci95": half, "error_messages": errors[0] if len(errors) == 1 else errors,
           "target_messages": int(runs["msg_target"].iloc[0]),
           "guide_r2": float(runs["hidden_guide_r2"].mean()) if "hidden_guide_r2" in runs else float("nan"),
           "alpha_mean": float(runs["hidden_alpha_mean"].mean()) if "hidden_alpha_mean" in runs else float("nan"),
           "seconds": float(runs["seconds"].median())}
    return row


def choose_lr(runs: pd.DataFrame, plan: Plan) -> float:
    """The hidden learning rate with the best mean final accuracy on the selection seeds."""
    chosen = runs[runs["seed"].isin(plan.selection_seeds)]
    means = chosen.groupby(LR_FIELD)["test_accuracy"].mean()
    return float(means.idxmax())


def table(frames: dict[str, pd.DataFrame], plan: Plan) -> dict:
    """The rows of the table and each guided configuration's comparison with each control."""
    lr = scenario_lr()
    rows, controls = [], {}
    guided = frames["guided"]
    for guide, coupling in plan.guided:
        runs = guided[(guided["populations.hidden.guide"] == str(GUIDES[guide]))
                      & (guided["coupling"] == str(COUPLINGS[coupling]))]
        # (when control a's lr is the scenario's, both rows hold the same runs)
        lrs = [("", lr)] + ([(", tuned lr", choose_lr(frames["unguided"], plan))] if plan.tuned_guides else [])
        for suffix, value in lrs:
            rows.append(describe(f"{coupling} {guide}{suffix}", runs[np.isclose(runs[LR_FIELD], value)],
                                 kind="guided", guide=guide, coupling=coupling, lr=value))
    for label in CONTROLS:
        runs = frames[label]
        reported = runs[runs["seed"].isin(plan.seeds)]
        best = choose_lr(runs, plan)
        if label == "unguided":
            same = reported[np.isclose(reported[LR_FIELD], lr)]
            rows.append(describe("unguided, same lr", same, kind="control", lr=lr))
            controls["unguided, same lr"] = rows[-1]
        name = {"unguided": "(a) unguided, tuned lr", "broadcast": "(b) broadcast (dfa)",
                "every tick": "(c) error every tick"}[label]
        at_edge = bool(np.isclose(best, max(runs[LR_FIELD])) or np.isclose(best, min(runs[LR_FIELD])))
        rows.append(describe(name, reported[np.isclose(reported[LR_FIELD], best)], kind="control", lr=best,
                             lr_at_grid_edge=at_edge,
                             lr_by_selection={str(k): float(v) for k, v in runs[runs["seed"].isin(plan.selection_seeds)]
                                              .groupby(LR_FIELD)["test_accuracy"].mean().items()}))
        controls[name] = rows[-1]
    comparisons = []
    for row in rows:
        if row["kind"] != "guided":
            continue
        for name, control in controls.items():
            a, b = np.array(row["accuracy"]), np.array(control["accuracy"])
            p = float(stats.ttest_ind(a, b, equal_var=False).pvalue) if a.std() + b.std() > 0 else float("nan")
            verdict = "no difference" if not p < ALPHA else ("better" if a.mean() > b.mean() else "worse")
            comparisons.append({"guided": row["label"], "control": name, "difference": float(a.mean() - b.mean()),
                                "welch_p": p, "verdict": verdict})
    return {"rows": rows, "comparisons": comparisons}


def render(result: dict) -> str:
    lines = [f"{'configuration':24} {'lr':>6} {'accuracy (95% CI)':>20} {'error msgs':>10} {'ctx msgs':>8} "
             f"{'R2':>6} {'alpha':>6} {'s/run':>6}"]
    for row in result["rows"]:
        errors = row["error_messages"]
        lines.append(f"{row['label']:24} {row['lr']:6.3f} {row['accuracy_mean']:11.4f} ± {row['accuracy_ci95']:6.4f} "
                     f"{errors if isinstance(errors, int) else '/'.join(map(str, errors)):>10} "
                     f"{row['target_messages']:8d} {row['guide_r2']:6.2f} {row['alpha_mean']:6.2f} {row['seconds']:6.1f}")
    for row in result["rows"]:
        if row.get("lr_at_grid_edge"):
            lines.append(f"  note: {row['label']}: the best lr on the selection seeds is at the edge of the grid")
    lines.append("")
    lines.append("each guided configuration against each control (Welch's t-test on final accuracy, "
                 f"'better'/'worse' where p < {ALPHA}):")
    for c in result["comparisons"]:
        lines.append(f"  {c['guided']:24} vs {c['control']:24} {c['difference']:+.4f}  p = {c['welch_p']:.3g}  "
                     f"{c['verdict']}")
    return "\n".join(lines)


def benchmark(plan: Plan, folder: Path, workers: int | None = None) -> dict:
    """Run the plan's sweeps in ``folder`` and return the table (rows, comparisons) with the plan."""
    frames = run_sweeps(plan, folder, workers)
    return {"plan": asdict(plan), "folder": str(folder), **table(frames, plan)}


def plain(value: Any) -> Any:
    """``value`` with NaN (no guide, no R^2) as None, so that the summary is strict JSON."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, mlp and linear direct guides, 400 ticks")
    parser.add_argument("--seeds", type=int, default=5, help="reported seeds (full mode)")
    parser.add_argument("--every", type=int, default=4, help="schedule.backward_every of guided runs and controls a, b")
    parser.add_argument("--ticks", type=int, default=800, help="ticks (full mode)")
    parser.add_argument("--meta", default="confidence", choices=["confidence", "learned", "fixed"])
    parser.add_argument("--no-tuned-guides", action="store_true",
                        help="run the guided configurations at the scenario's lr only (half the guided runs)")
    parser.add_argument("--workers", type=int, default=None, help="sweep workers (default: the usable cores)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    plan = quick_plan(args.every, args.meta) if args.quick else full_plan(args.seeds, args.every, args.meta, args.ticks)
    plan.tuned_guides = not args.no_tuned_guides
    mode = "quick" if args.quick else "full"
    folder = args.out / f"guided_learning-{mode}-{plan.key}"
    print(f"guided learning against fair controls ({mode}: {len(plan.seeds)} seeds, {plan.ticks} ticks, the error "
          f"every {plan.every} ticks; lr chosen on seeds {plan.selection_seeds}); sweeps in {folder}", flush=True)
    began = time.perf_counter()
    result = benchmark(plan, folder, args.workers)
    result["wall_seconds"] = time.perf_counter() - began
    print()
    print(render(result))
    print(f"\nwall time {result['wall_seconds']:.0f} s")
    path = args.out / f"guided_learning{'_quick' if args.quick else ''}.json"
    path.write_text(json.dumps(plain(result), indent=2, allow_nan=False))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
