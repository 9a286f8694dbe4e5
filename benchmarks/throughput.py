"""Throughput of a training tick (forward + backward + learn): ribbed's executors against the
programs a user would write by hand, under the machine's roofline.

Programs, for each network family and size:
  reference  ribbed's per-agent executor (NetworkModel.step with backend reference)
  batched    ribbed's batched executor   (NetworkModel.step with backend batched)
  mesa       one mesa.Agent per neuron pulling its inputs with numpy (hand_programs.Mesa*)
  torch      the shortest plain-torch program with autograd (hand_programs.Layered/Sparse/Recurrent)

Families: ``layered`` (dense, tanh, cross-entropy), ``sparse`` (two populations of n, a
fixed-in-degree projection between them, MSE, batch 1) and ``recurrent`` (n inputs one-to-one
into n tanh neurons that also read each other's previous activations through a fixed-in-degree
projection, batch 1).  All four programs start from the same weights (drawn by ribbed) and the
same data; the third tick's loss of each is checked against the batched executor's.

Each case runs in its own process (so its peak memory is its own): one warm-up tick, then the
median of timed ticks.  Prints a table and writes JSON.  "peak GiB" is the process's peak
resident memory on the host (not GPU memory).

    python benchmarks/throughput.py                 # every size (about 15 minutes on 2 cores)
    python benchmarks/throughput.py --quick         # small sizes only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROGRAMS = ("reference", "batched", "mesa", "torch")

#: (family, label, parameters). Sizes of slow programs are capped in SLOW_LIMIT.
CASES = [
    ("layered", "64-512-512-10 B64", {"sizes": [64, 512, 512, 10], "batch": 64}),
    ("layered", "64-1024-1024-10 B64", {"sizes": [64, 1024, 1024, 10], "batch": 64}),
    ("layered", "64-4096-4096-10 B64", {"sizes": [64, 4096, 4096, 10], "batch": 64}),
    ("sparse", "n=1e3 k=100", {"n": 1_000, "k": 100}),
    ("sparse", "n=1e4 k=10", {"n": 10_000, "k": 10}),
    ("sparse", "n=1e4 k=100", {"n": 10_000, "k": 100}),
    ("sparse", "n=1e5 k=100", {"n": 100_000, "k": 100}),
    ("sparse", "n=1e6 k=100", {"n": 1_000_000, "k": 100}),
    ("recurrent", "n=1e3 k=100", {"n": 1_000, "k": 100}),
    ("recurrent", "n=1e4 k=100", {"n": 10_000, "k": 100}),
    ("recurrent", "n=1e5 k=100", {"n": 100_000, "k": 100}),
    ("recurrent", "n=1e6 k=100", {"n": 1_000_000, "k": 100}),
]
QUICK = {"64-1024-1024-10 B64", "n=1e3 k=100", "n=1e4 k=10"}
#: The per-agent programs are run up to this many synapses (beyond, a tick takes minutes).
SLOW_LIMIT = {"reference": 2_500_000, "mesa": 10_000_001}
LR = 0.01


# --------------------------------------------------------------------------- one case (child process)


def scenario_for(family: str, params: dict, data: Path, device: str, backend: str) -> dict:
    """The ribbed scenario of a case (the hand programs are built from its network)."""
    backend_spec = {"kind": backend}
    if backend == "batched":
        backend_spec.update(device=device, dtype="float32")
    if family == "layered":
        sizes = params["sizes"]
        populations = [{"name": "p0", "size": sizes[0], "role": "input"}]
        for i, size in enumerate(sizes[1:], start=1):
            last = i == len(sizes) - 1
            populations.append({"name": f"p{i}", "size": size, "role": "output" if last else "hidden",
                                "activation": "identity" if last else "tanh"})
        projections = [{"pre": f"p{i}", "post": f"p{i + 1}"} for i in range(len(sizes) - 1)]
        task = {"kind": "npz", "path": str(data), "problem": "classification", "loss": "cross_entropy"}
        batch = params["batch"]
    else:
        n, k = params["n"], params["k"]
        degree = {"rule": "fixed_in_degree", "k": k}
        if family == "sparse":
            populations = [{"name": "pre", "size": n, "role": "input"},
                           {"name": "post", "size": n, "role": "output", "activation": "identity"}]
            projections = [{"pre": "pre", "post": "post", "connectivity": degree}]
        else:
            populations = [{"name": "in", "size": n, "role": "input"},
                           {"name": "rec", "size": n, "role": "output", "activation": "tanh"}]
            projections = [{"pre": "in", "post": "rec", "connectivity": "one_to_one"},
                           {"pre": "rec", "post": "rec", "connectivity": degree}]
        task = {"kind": "npz", "path": str(data), "problem": "regression", "loss": "mse"}
        batch = 1
    return {"name": f"bench-{family}", "seed": 0, "task": task, "populations": populations,
            "projections": projections, "learning": {"rule": "backprop", "optimizer": "sgd", "lr": LR},
            "run": {"ticks": 1_000_000, "batch_size": batch, "eval_every": 1_000_000},
            "backend": backend_spec, "output": {"agent_metrics": False}}


def write_data(family: str, params: dict, folder: Path) -> Path:
    rng = np.random.default_rng(1)
    if family == "layered":
        sizes = params["sizes"]
        X = rng.standard_normal((512, sizes[0])).astype(np.float32)
        y = np.arange(512) % sizes[-1]
    else:
        X = rng.standard_normal((4, params["n"])).astype(np.float32)
        y = rng.standard_normal((4, params["n"])).astype(np.float32)
    path = folder / f"{family}.npz"
    np.savez(path, X_train=X, y_train=y, X_test=X[:2], y_test=y[:2])
    return path


def hand_program(kind: str, family: str, network, device: str):
    """The hand-written program of ``kind`` (mesa or torch), from ribbed's initial weights."""
    import torch

    from hand_programs import Layered, MesaLayered, MesaRecurrent, MesaSparse, Recurrent, Sparse

    torch_kwargs = {"device": device, "dtype": torch.float32}
    projections = network.projections
    if family == "layered":
        Ws = [p.weights.reshape(p.post.size, p.pre.size) for p in projections]  # canonical order is row-major
        bs = [np.zeros(p.post.size) for p in projections]
        return MesaLayered(Ws, bs, LR) if kind == "mesa" else Layered(Ws, bs, LR, **torch_kwargs)
    if family == "sparse":
        (p,) = projections
        n, shape = p.post.size, (p.post.size, -1)
        args = (p.pre_idx.reshape(shape), p.weights.reshape(shape), np.zeros(n), LR)
        return MesaSparse(*args) if kind == "mesa" else Sparse(*args, **torch_kwargs)
    one_to_one, recurrent = projections
    n, shape = recurrent.post.size, (recurrent.post.size, -1)
    args = (one_to_one.weights, recurrent.pre_idx.reshape(shape), recurrent.weights.reshape(shape), np.zeros(n), LR)
    return MesaRecurrent(*args) if kind == "mesa" else Recurrent(*args, **torch_kwargs)


def run_case(family: str, params: dict, program: str, device: str, repeats: int, budget: float) -> dict:
    """Time ``program`` on one case in this process; returns seconds per tick and more."""
    import torch

    import ribbed
    from ribbed.environment.network import build_network

    with tempfile.TemporaryDirectory() as folder:
        data = write_data(family, params, Path(folder))
        backend = program if program in ("reference", "batched") else "reference"
        scenario = ribbed.load_scenario(scenario_for(family, params, data, device, backend))
        start = time.perf_counter()
        if program in ("reference", "batched"):
            model = ribbed.NetworkModel(scenario)
            network = model.network

            def tick():
                model.step()
                return model.last_result
        else:
            from ribbed.environment.stream import DataStream
            from ribbed.environment.tasks import load_task

            network = build_network(scenario)
            dataset = load_task(scenario)
            targets = dataset.targets(dataset.y_train)
            stream = DataStream(len(dataset.X_train), scenario.run.batch_size, scenario.seed)
            hand = hand_program(program, family, network, device)
            inputs, answers = dataset.X_train, targets
            if program == "torch":  # the data on the device, as the batched executor holds it
                inputs = torch.as_tensor(inputs, dtype=torch.float32, device=device)
                answers = torch.as_tensor(answers, dtype=torch.float32, device=device)
            state = {"tick": 0}

            def tick():
                index = stream.indices(state["tick"])
                state["tick"] += 1
                if program == "torch":
                    index = torch.as_tensor(index, device=device)
                return hand.tick(inputs[index], answers[index])
        setup = time.perf_counter() - start
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        # The first three ticks' losses: the third depends on two updates (and, in the recurrent
        # family, on the delayed activity), so equal losses mean the programs do the same math.
        losses = [tick() for _ in range(3)]
        losses = [loss if isinstance(loss, float) else loss.loss for loss in losses]
        sync()
        times = []
        deadline = time.perf_counter() + budget
        while len(times) < repeats and (len(times) < 2 or time.perf_counter() < deadline):
            begin = time.perf_counter()
            tick()
            sync()
            times.append(time.perf_counter() - begin)
        computing = sum(p.size for p in network.populations.values() if p.role != "input")
        return {"seconds": statistics.median(times), "repeats": len(times), "third_loss": losses[2],
                "setup_seconds": setup, "neurons": network.n_neurons, "computing_neurons": computing,
                "synapses": network.n_synapses,
                "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


# --------------------------------------------------------------------------- the driver


def roofline(device: str) -> dict:
    import torch

    from roofline import matmul_peak, stream_triad

    return {"triad_gb_s": stream_triad(device, torch.float32), "matmul_gflop_s": matmul_peak(device, torch.float32)}


def hot_path_fraction(family: str, params: dict, seconds: float, synapses: int, roof: dict) -> float:
    """The share of the roofline a tick reaches. Dense: its matmul flops (forward, errors and
    weight gradients: 2 x batch flops per synapse each; no errors into the input layer) over
    the matmul peak. Sparse: the least memory traffic a tick needs (per synapse: its float32
    weight read in forward, read and written in learn, and a 4-byte index read in both) over
    the triad bandwidth."""
    if family == "layered":
        sizes, batch = params["sizes"], params["batch"]
        first = sizes[0] * sizes[1]
        flops = 2 * batch * (3 * synapses - first)
        return flops / seconds / 1e9 / roof["matmul_gflop_s"]
    traffic = synapses * (3 * 4 + 2 * 4)
    return traffic / seconds / 1e9 / roof["triad_gb_s"]


def child_command(family: str, label: str, program: str, args: argparse.Namespace) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", family, label, program,
            "--device", args.device, "--threads", str(args.threads)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--programs", default=",".join(PROGRAMS), help="comma-separated subset of programs")
    parser.add_argument("--cases", default=None, help="comma-separated case labels (default: all)")
    parser.add_argument("--json", default="benchmarks/results/throughput.json", help="where to write the results")
    parser.add_argument("--child", nargs=3, metavar=("FAMILY", "LABEL", "PROGRAM"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    sys.path.insert(0, str(HERE))

    if args.child:
        family, label, program = args.child
        params = next(p for f, l, p in CASES if f == family and l == label)
        fast = program in ("batched", "torch")
        big = params.get("n", 0) >= 1_000_000
        result = run_case(family, params, program, args.device, repeats=(5 if big else 20) if fast else 3,
                          budget=60.0 if fast else 90.0)
        print(json.dumps(result))
        return

    programs = args.programs.split(",")
    wanted = set(args.cases.split(",")) if args.cases else (QUICK if args.quick else None)
    cases = [c for c in CASES if wanted is None or c[1] in wanted]
    roof = roofline(args.device)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"device: {args.device} ({device_name}), torch threads: {args.threads}, torch {torch.__version__}")
    print(f"roofline: triad {roof['triad_gb_s']:.1f} GB/s, matmul {roof['matmul_gflop_s']:.1f} GFLOP/s (float32)")
    results = []
    header = (f"{'family':10} {'case':22} {'program':10} {'ms/tick':>10} {'neuron-upd/s':>13} {'synapse-upd/s':>14} "
              f"{'x batched':>9} {'roofline':>8} {'peak GiB':>8}  loss at tick 3")
    print(header)
    for family, label, params in cases:
        rows = {}
        for program in programs:
            expected = {"layered": sum(a * b for a, b in zip(params.get("sizes", [0]), params.get("sizes", [0])[1:])),
                        }.get(family, params.get("n", 0) * params.get("k", 0))
            if expected > SLOW_LIMIT.get(program, float("inf")):
                continue
            completed = subprocess.run(child_command(family, label, program, args), capture_output=True, text=True)
            if completed.returncode != 0:
                print(f"{family:10} {label:22} {program:10} failed: {completed.stderr.strip().splitlines()[-1:]}")
                continue
            rows[program] = json.loads(completed.stdout.strip().splitlines()[-1])
        base = rows.get("batched")
        for program, row in rows.items():
            row.update(family=family, case=label, program=program, device=args.device, threads=args.threads)
            row["neuron_updates_per_s"] = row["computing_neurons"] / row["seconds"]
            row["synapse_updates_per_s"] = row["synapses"] / row["seconds"]
            row["batched_speedup"] = row["seconds"] / base["seconds"] if base else None
            row["roofline_fraction"] = hot_path_fraction(family, params, row["seconds"], row["synapses"], roof)
            if base:
                row["same_third_loss"] = bool(np.isclose(row["third_loss"], base["third_loss"], rtol=1e-3))
            results.append(row)
            speedup = f"{row['batched_speedup']:9.2f}" if base else f"{'-':>9}"
            print(f"{family:10} {label:22} {program:10} {row['seconds'] * 1e3:10.2f} "
                  f"{row['neuron_updates_per_s']:13.3e} {row['synapse_updates_per_s']:14.3e} {speedup} "
                  f"{row['roofline_fraction']:8.1%} {row['peak_rss_gib']:8.2f}  {row['third_loss']:.6g}"
                  + ("" if row.get("same_third_loss", True) else "  (differs from batched!)"))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": args.device, "device_name": device_name, "threads": args.threads,
                               "torch": torch.__version__, "roofline": roof, "results": results}, indent=2))
    print(f"x batched: the program's tick time over the batched executor's. Results: {out}")


if __name__ == "__main__":
    main()
