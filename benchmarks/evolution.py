"""Does evolving guides pay? Evolved guides against random search over the same genomes, the best
single fixed kind, and the research instrument's fair unguided controls, on two tasks, every run
through ``ribbed.sweep`` (issue 17).

Both tasks are digits-evolve's setting: the propagated error every 4th tick, the hidden neurons
hashed by activity into guides shared by 8 neurons each (``hash``, ``rehash_every: 50``),
identity features (``readout``), confidence meta, SGD, the batched executor on the CPU:

- **digits**: the built-in ``digits-evolve`` (64-64-10, 8 guides, lr 0.02), 800 ticks;
- **moons**: two interleaving half circles (noise 0.15), 2-32-2 under 4 guides, lr 0.05: a
  low-dimensional task whose decision boundary needs the hidden layer (a linear one stops near
  0.86, the network reaches 0.97), with other input statistics than digits, so that an outcome
  that holds on both is not digits' alone; cheap enough for 5 seeds of every arm.

Arms (the guided ones at the task's learning rate and again at control (a)'s tuned one, borrowed
from the unguided selection, not tuned for the guides; on the reported seeds 0..4):

- **evolved**: ``evolution`` with tournament selection (digits-evolve's: 4 candidates of kinds
  linear and mlp, a generation every 100 ticks, scores forgetting at 0.2, 2 elites, kinds
  protected for 3 generations), and **evolved, fast** with a generation every 50 ticks, 0.1, 1
  elite (:data:`FAST`: newborns cannot overtake; the settings of the first measurement);
- **random search**: the same with ``selection: random`` (the same candidates, generations and
  evaluations; newborn genomes drawn afresh; docs/semantics.md, "Evolving guides");
- **fixed linear**, **fixed mlp**: one guide kind, no evolution (the linear guide's defaults;
  the mlp guide of digits-evolve: 16 hidden, Adam, lr 0.01); the better one is named;
- **controls** (no guide), as benchmarks/guided_learning.py makes them: *unguided, same lr*;
  *(a) unguided, tuned lr* and *(b) broadcast (dfa), tuned lr*, their hidden learning rate the
  best of the task's lr x {1, 2, 4, ..., 256} on selection seeds 100..102 (not the reported
  ones); *(c) error every tick* (``backward_every: 1``, tuned likewise): more information than
  the others have, an upper bound rather than a fair control.

Columns: final held-out accuracy and guide R^2 (held-out credit, the ``hidden_guide_r2`` metric,
averaged over the evaluations from tick 200 on, as tests/test_identity_guides.py reads it),
mean ± 95% t-interval over the seeds; Welch's p of evolved against every other arm. Cost:
seconds per tick of each arm, the median of repeats timed in this process one after another
(ticks only, no evaluations), apart from the sweeps (whose workers share the cores).  Nothing is
written outside the sweeps' folders (benchmarks/results/, not tracked): the table is printed.

    python benchmarks/evolution.py --quick      # 2 seeds, 400 ticks, lr x {1, 4, 16}: a smoke run
    python benchmarks/evolution.py              # 5 seeds, 800 ticks: ~250 runs a task
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import stats

import ribbed
from guided_learning import final_rows, interval

LR_FIELD = "populations.hidden.learning.lr"
GUIDE_FIELD = "populations.hidden.guide"
#: Evaluations from this tick on make a run's guide R^2.
R2_FROM = 200
#: The unguided control families: label, changes to the unguided scenario.
CONTROLS = {"unguided": {}, "broadcast": {"populations.hidden.broadcast": "dfa"},
            "every tick": {"schedule.backward_every": 1}}
CONTROL_NAMES = {"unguided": "(a) unguided, tuned lr", "broadcast": "(b) broadcast (dfa), tuned lr",
                 "every tick": "(c) error every tick, tuned lr"}


@dataclass
class Plan:
    """Everything that decides the runs (and so the results folder's name)."""

    seeds: list[int]
    selection_seeds: list[int]
    ticks: int
    eval_every: int = 100
    lr_factors: list[float] = field(default_factory=lambda: [2.0**k for k in range(9)])
    timing_ticks: int = 200
    timing_repeats: int = 3

    def key(self, task: str) -> str:
        """Names the task's results folder: the plan, the task's scenario and the arms."""
        scenario = base_scenario(task, self, True)
        what = [asdict(self), scenario, guided_arms(scenario), CONTROLS, "guided arms at both lrs"]
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]


# --------------------------------------------------------------------------- the tasks and arms


def digits_scenario() -> dict:
    """digits-evolve as it is."""
    return ribbed.load_scenario("digits-evolve").model_dump(mode="json", exclude_none=True)


def moons_scenario() -> dict:
    """digits-evolve's setting on moons: 2-32-2, 4 hash guides (8 neurons each), lr 0.05."""
    data = digits_scenario()
    data["name"] = "moons-evolve"
    data["task"] = {"kind": "moons", "n_samples": 1000, "noise": 0.15, "test_fraction": 0.2, "loss": "cross_entropy"}
    for population, size in zip(data["populations"], (2, 32, 2)):
        population["size"] = size
    data["coupling"]["bits"] = 2
    data["learning"]["lr"] = 0.05
    return data


TASKS: dict[str, Callable[[], dict]] = {"digits": digits_scenario, "moons": moons_scenario}


#: The "fast" evolution settings, the contrast to digits-evolve's: a newborn starts at score 0 (its
#: running error E = V) and must overtake an elite whose score is settled; with a generation every
#: 50 ticks and the error every 4th (12 deliveries at rate 0.1) a newborn's score reaches at most
#: 1 - 0.9^12 = 0.72 of its true score within its one generation, and with 1 elite every other slot
#: is replaced: no newborn can overtake a generation-0 candidate that scores above 0.72.
#: digits-evolve's own (a generation every 100 ticks, rate 0.2, 2 elites: 0.8^25 < 0.004, and a
#: newborn that ranks second survives into the next generation) leave selection room to act.
FAST = {"generation_every": 50, "score_decay": 0.1, "elites": 1}


def guided_arms(scenario: dict) -> dict[str, dict]:
    """The guided arms' hidden-population guides, from the task's evolving guide: evolution and
    random search with the task's settings and with :data:`FAST` ones, the fixed kinds."""
    base = copy.deepcopy(scenario["populations"][1]["guide"])
    arms = {}
    for suffix, changes in (("", {}), (", fast", FAST)):
        for label, selection in (("evolved", "tournament"), ("random search", "random")):
            guide = copy.deepcopy(base)
            guide["evolution"].update(changes, selection=selection)
            arms[label + suffix] = guide
    identity = base.get("identity", [])
    mlp = {key: base[key] for key in ("kind", "hidden", "lr", "optimizer") if key in base}
    return {**arms, "fixed linear": {"kind": "linear", "identity": identity},
            "fixed mlp": {**mlp, "kind": "mlp", "identity": identity}}


def base_scenario(task: str, plan: Plan, guided: bool) -> dict:
    """The task on the batched CPU executor with the plan's length, no log; without its guide,
    coupling and meta when not ``guided``."""
    data = TASKS[task]()
    data.update(backend={"kind": "batched", "device": "cpu"}, log={"level": "off"}, output={"agent_metrics": False})
    data["run"].update(ticks=plan.ticks, eval_every=plan.eval_every)
    if not guided:
        data["populations"][1].pop("guide")
        data.pop("coupling"), data.pop("meta")
    return data


# --------------------------------------------------------------------------- the sweeps


def _sweep(label: str, scenario: dict, seeds: list[int], grid: dict, folder: Path, workers: int | None) -> pd.DataFrame:
    began = time.perf_counter()
    result = ribbed.sweep(scenario, seeds=seeds, grid=grid, out=folder / label.replace(" ", "-"), workers=workers)
    if result.failed:
        raise SystemExit(f"{label}: {len(result.failed)} runs failed, first: {result.failed[0].name} "
                         f"({result.failed[0].error})")
    rows = final_rows(result.frame, result.directory)
    if "hidden_guide_r2" in result.frame:
        late = result.frame[result.frame["tick"] >= R2_FROM]
        rows["guide_r2"] = rows["point"].map(late.groupby("point")["hidden_guide_r2"].mean())
        rows["served_newborn"], rows["served_mlp"] = zip(*(_serving(result.directory / point) for point in rows["point"]))
    print(f"  swept {label}: {len(rows)} runs in {time.perf_counter() - began:.0f} s", flush=True)
    return rows


def _serving(run: Path) -> tuple[float, float]:
    """At a run's last recorded tick, the fractions of hidden neurons whose guide's serving
    candidate was born after generation 0, and is an mlp (NaN without evolution)."""
    agents = pd.read_csv(run / "agents.csv")
    hidden = agents[(agents["population"] == "hidden") & (agents["agent_kind"] == "neuron")]
    if "guide_generation" not in hidden or hidden["guide_generation"].isna().all():
        return float("nan"), float("nan")
    last = hidden[hidden["tick"] == hidden["tick"].max()]
    return float((last["guide_generation"] > 0).mean()), float((last["guide_kind"] == "mlp").mean())


def run_task(task: str, plan: Plan, folder: Path, workers: int | None) -> dict[str, pd.DataFrame]:
    """Every arm's final rows (one per run): the guided sweep and each control family's."""
    guided = base_scenario(task, plan, True)
    guided["output"] = {"agent_metrics": True}  # (agents.csv: which candidate serves)
    lr = guided["learning"]["lr"]
    lrs = [lr * f for f in plan.lr_factors]
    frames = {}
    for label, changes in CONTROLS.items():
        frames[label] = _sweep(label, base_scenario(task, plan, False), plan.seeds + plan.selection_seeds,
                               {**{k: [v] for k, v in changes.items()}, LR_FIELD: lrs}, folder, workers)
    tuned, _ = choose_lr(frames["unguided"], plan)
    frames["guided"] = _sweep("guided", guided, plan.seeds, {GUIDE_FIELD: list(guided_arms(guided).values()),
                                                             LR_FIELD: list(dict.fromkeys([lr, tuned]))}, folder, workers)
    return frames


def choose_lr(runs: pd.DataFrame, plan: Plan) -> tuple[float, bool]:
    """The hidden learning rate with the best mean final accuracy on the selection seeds, and
    whether it is at the edge of the grid."""
    means = runs[runs["seed"].isin(plan.selection_seeds)].groupby(LR_FIELD)["test_accuracy"].mean()
    best = float(means.idxmax())
    return best, bool(np.isclose(best, means.index.max()) or np.isclose(best, means.index.min()))


def seconds_per_tick(task: str, plan: Plan) -> dict[str, float]:
    """Per arm (guided arms and the unguided network at the task's lr), the median over
    ``timing_repeats`` of the seconds per tick of ``timing_ticks`` ticks (no evaluations)."""
    guided = base_scenario(task, plan, True)
    scenarios = {label: copy.deepcopy(guided) for label in guided_arms(guided)}
    for label, guide in guided_arms(guided).items():
        scenarios[label]["populations"][1]["guide"] = guide
    scenarios["unguided"] = base_scenario(task, plan, False)
    timings = {}
    for label, scenario in scenarios.items():
        scenario["run"].update(ticks=plan.timing_ticks, eval_every=plan.timing_ticks)
        repeats = []
        for _ in range(plan.timing_repeats):
            model = ribbed.NetworkModel(scenario)
            began = time.perf_counter()
            for _ in range(plan.timing_ticks):
                model.step()
            repeats.append((time.perf_counter() - began) / plan.timing_ticks)
        timings[label] = statistics.median(repeats)
    return timings


# --------------------------------------------------------------------------- the table


def _welch(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2 or a.std() + b.std() == 0 or np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def table(task: str, frames: dict[str, pd.DataFrame], plan: Plan, timings: dict[str, float]) -> dict:
    """The task's rows (arm, lr, accuracy and R^2 per seed, mean ± CI, s/tick) and evolved's
    comparisons with every other arm."""
    guided_runs = frames["guided"]
    scenario = base_scenario(task, plan, True)
    lr = scenario["learning"]["lr"]
    rows = []

    def row(label: str, runs: pd.DataFrame, kind: str, lr_used: float, **extra: Any) -> None:
        runs = runs.sort_values("seed")
        accuracy = runs["test_accuracy"].to_numpy(dtype=np.float64)
        r2 = runs["guide_r2"].to_numpy(dtype=np.float64) if "guide_r2" in runs else np.full(len(runs), np.nan)
        serving = {key: float(runs[key].mean()) if key in runs else float("nan")
                   for key in ("served_newborn", "served_mlp")}
        rows.append({"label": label, "kind": kind, "lr": lr_used, "seeds": runs["seed"].astype(int).tolist(),
                     "accuracy": accuracy.tolist(), "r2": r2.tolist(), "accuracy_mean_ci": interval(accuracy),
                     "r2_mean_ci": interval(r2) if not np.isnan(r2).all() else (float("nan"), float("nan")),
                     "seconds_per_tick": timings.get(extra.get("arm", label), float("nan")), **serving, **extra})

    tuned, _ = choose_lr(frames["unguided"], plan)
    groups = [("", lr)] + ([(" @ tuned lr", tuned)] if not np.isclose(tuned, lr) else [])  # (else the same runs)
    for suffix, value in groups:
        for label, guide in guided_arms(scenario).items():
            runs = guided_runs[(guided_runs[GUIDE_FIELD] == str(guide)) & np.isclose(guided_runs[LR_FIELD], value)]
            row(label + suffix, runs, "guided", value, arm=label, group=suffix)
    unguided = frames["unguided"]
    reported = unguided[unguided["seed"].isin(plan.seeds)]
    row("unguided, same lr", reported[np.isclose(reported[LR_FIELD], lr)], "control", lr)
    rows[-1]["seconds_per_tick"] = timings.get("unguided", float("nan"))
    for family, name in CONTROL_NAMES.items():
        runs = frames[family]
        best, at_edge = choose_lr(runs, plan)
        chosen = runs[runs["seed"].isin(plan.seeds) & np.isclose(runs[LR_FIELD], best)]
        row(name, chosen, "control", best, lr_at_grid_edge=at_edge)
    by_label = {r["label"]: r for r in rows}
    fixed = max(("fixed linear", "fixed mlp"), key=lambda label: by_label[label]["accuracy_mean_ci"][0])
    comparisons = []
    for evolved in (r for r in rows if r["label"].startswith("evolved")):
        for other in rows:  # the other guided arms at the same lr, and the controls
            if other["label"].startswith("evolved") or other.get("group", evolved["group"]) != evolved["group"]:
                continue
            difference = float(np.mean(evolved["accuracy"]) - np.mean(other["accuracy"]))
            p = _welch(evolved["accuracy"], other["accuracy"])
            r2_p = _welch(evolved["r2"], other["r2"])
            comparisons.append({"evolved": evolved["label"], "against": other["label"],
                                "accuracy_difference": difference, "accuracy_p": p,
                                "r2_difference": float(np.mean(evolved["r2"]) - np.mean(other["r2"])), "r2_p": r2_p,
                                "verdict": "no difference" if not p < 0.05 else ("wins" if difference > 0 else "loses")})
    return {"task": task, "rows": rows, "best_fixed": fixed, "comparisons": comparisons}


def render(result: dict) -> str:
    lines = [f"task {result['task']}: best single fixed kind = {result['best_fixed']}",
             f"  {'arm':36} {'lr':>6} {'accuracy (95% CI)':>19} {'guide R2 (95% CI)':>19} {'ms/tick':>8} "
             f"{'newborn':>7} {'mlp':>5}"]
    for row in result["rows"]:
        (acc, acc_ci), (r2, r2_ci) = row["accuracy_mean_ci"], row["r2_mean_ci"]
        r2_text = f"{r2:7.3f} ± {r2_ci:5.3f}" if np.isfinite(r2) else f"{'-':>15}"
        seconds = row["seconds_per_tick"]
        lines.append(f"  {row['label']:36} {row['lr']:6.3f} {acc:9.4f} ± {acc_ci:6.4f} {r2_text:>19} "
                     f"{seconds * 1e3 if np.isfinite(seconds) else float('nan'):8.2f} "
                     f"{row['served_newborn']:7.2f} {row['served_mlp']:5.2f}"
                     + ("  (lr at the grid's edge)" if row.get("lr_at_grid_edge") else ""))
    lines.append("  newborn, mlp: the fractions of hidden neurons whose serving candidate was born after generation 0, "
                 "is an mlp (last evaluation, mean over seeds)")
    lines.append("  each evolved arm against each other arm (accuracy difference, Welch p; guide R2 difference, Welch p):")
    for c in result["comparisons"]:
        r2 = f"{c['r2_difference']:+.3f} p = {c['r2_p']:.3g}" if np.isfinite(c["r2_difference"]) else ""
        lines.append(f"    {c['evolved']:30} vs {c['against']:38} {c['accuracy_difference']:+.4f} "
                     f"p = {c['accuracy_p']:.3g} ({c['verdict']})  {r2}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 400 ticks, lr x {1, 4, 16}, 1 timing repeat")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--workers", type=int, default=None, help="sweep workers (default: the usable cores)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    if args.quick:
        plan = Plan(seeds=[0, 1], selection_seeds=[100], ticks=400, lr_factors=[1.0, 4.0, 16.0], timing_ticks=100,
                    timing_repeats=1)
    else:
        plan = Plan(seeds=list(range(5)), selection_seeds=[100, 101, 102], ticks=800)
    began = time.perf_counter()
    for task in args.tasks:
        folder = args.out / f"evolution-{task}-{'quick' if args.quick else 'full'}-{plan.key(task)}"
        print(f"{task}: {len(plan.seeds)} seeds, {plan.ticks} ticks; sweeps in {folder}", flush=True)
        frames = run_task(task, plan, folder, args.workers)
        timings = seconds_per_tick(task, plan)
        print(render(table(task, frames, plan, timings)), flush=True)
    print(f"\nwall time {time.perf_counter() - began:.0f} s (the machine's cores were shared with other work: "
          "timings are indicative)")


if __name__ == "__main__":
    main()
