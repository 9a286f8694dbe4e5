"""Throughput of a spiking training tick: ribbed's batched executor against the snnTorch program a
user would write by hand for the same network, and ribbed's reference executor at a small size.

The tick is digits-spiking's (scenarios/builtin/digits-spiking.yaml): inputs as a constant current
(the ``direct`` encoding) into a hidden layer of leaky integrate-and-fire neurons (snnTorch's
``Leaky``: beta 0.9, threshold 1, reset by subtraction, the atan surrogate with alpha 2), then a
LIF output layer read out as spike counts over T steps, cross-entropy on the counts, backprop
through the T steps, one Adam step.  The snnTorch program (:class:`SnnTorchProgram`) builds the
same network from ribbed's initial weights with ``snntorch.Leaky``, loops over the steps and calls
``loss.backward()`` and ``torch.optim.Adam``; the third tick's loss of each program is checked
against the batched executor's, so that both are known to do the same arithmetic.

Cases: ``tiny`` (16-32-10, B 8, T 5: the quick mode's), ``digits`` (64-100-10 all to all, B 32,
T 25: the built-in's network) and ``sparse`` (n inputs, n hidden, 10 outputs, every projection
fixed in-degree k, B 16, T 10), from 2e3 to 1e6 neurons.  Each (case, program) runs in its own
process (its peak memory is its own): three checked ticks, then the median of timed ticks.  On a
shared machine the load changes from one process to the next, so batched and snnTorch are also
timed in one process with their ticks interleaved (``x interl.``: the ratio under the same
load; ``--no-interleave`` skips it).  The hand-written program holds a fixed in-degree
projection in the gather form (W (post, k) times x[:, pre], as benchmarks/hand_programs.py's
``Sparse``).  Metrics: ticks/s, spikes/s
(every spike the tick's spiking neurons emit, summed over batch rows and steps),
synapse-updates/s (synapses x batch x steps per second: each synapse carries every sample's
current at every step), the run's size estimate per neuron (:mod:`ribbed.scenarios.size`) and the
process's measured peak resident memory per neuron.

    python benchmarks/spiking_throughput.py                  # every case (minutes on 2 cores)
    python benchmarks/spiking_throughput.py --quick          # the tiny case only, seconds
    python benchmarks/spiking_throughput.py --device cuda    # on a GPU (default: cuda when present)
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
PROGRAMS = ("batched", "snntorch", "reference")
BETA, THRESHOLD, ALPHA, LR = 0.9, 1.0, 2.0, 0.002
N_CLASSES = 10

#: (label, parameters). ``n``: inputs and hidden neurons; ``k``: in-degree (None: all to all).
CASES = [
    ("tiny 16-32-10 B8 T5", {"n_in": 16, "n_hidden": 32, "k": None, "batch": 8, "steps": 5}),
    ("digits 64-100-10 B32 T25", {"n_in": 64, "n_hidden": 100, "k": None, "batch": 32, "steps": 25}),
    ("sparse n=1e3 k=100", {"n_in": 1_000, "n_hidden": 1_000, "k": 100, "batch": 16, "steps": 10}),
    ("sparse n=1e4 k=100", {"n_in": 10_000, "n_hidden": 10_000, "k": 100, "batch": 16, "steps": 10}),
    ("sparse n=1e5 k=20", {"n_in": 100_000, "n_hidden": 100_000, "k": 20, "batch": 16, "steps": 10}),
    ("sparse n=5e5 k=20", {"n_in": 500_000, "n_hidden": 500_000, "k": 20, "batch": 16, "steps": 10}),
]
QUICK = {"tiny 16-32-10 B8 T5"}
#: The reference executor (one agent per neuron) runs only these: beyond, a tick takes seconds to minutes.
REFERENCE_CASES = {"tiny 16-32-10 B8 T5", "digits 64-100-10 B32 T25"}


# --------------------------------------------------------------------------- the scenario and the data


def scenario_for(params: dict, data: Path, device: str, backend: str, dtype: str = "float32") -> dict:
    """The ribbed scenario of a case (the snnTorch program is built from its network)."""
    k = params["k"]
    connectivity = "all_to_all" if k is None else {"rule": "fixed_in_degree", "k": k}
    lif = {"policy": "lif", "beta": BETA, "threshold": THRESHOLD, "surrogate": {"kind": "atan", "parameter": ALPHA}}
    backend_spec: dict = {"kind": backend}
    if backend == "batched":
        backend_spec.update(device=device, dtype=dtype)
    return {
        "name": "bench-spiking", "seed": 0,
        "task": {"kind": "npz", "path": str(data), "problem": "classification", "loss": "cross_entropy"},
        "populations": [{"name": "inputs", "size": params["n_in"], "role": "input"},
                        {"name": "hidden", "size": params["n_hidden"], "firing": lif},
                        {"name": "classes", "size": N_CLASSES, "role": "output", "activation": "identity",
                         "firing": lif, "readout": "count"}],
        "projections": [{"pre": "inputs", "post": "hidden", "connectivity": connectivity, "init": "fan_in_uniform"},
                        {"pre": "hidden", "post": "classes", "connectivity": connectivity,
                         "init": "fan_in_uniform"}],
        "learning": {"rule": "backprop", "optimizer": "adam", "lr": LR},
        "run": {"ticks": 1_000_000, "batch_size": params["batch"], "eval_every": 1_000_000,
                "steps_per_sample": params["steps"]},
        "backend": backend_spec, "output": {"agent_metrics": False},
    }


def write_data(params: dict, folder: Path) -> Path:
    """Standard-normal inputs and random labels (what is timed is the tick, not what it learns)."""
    rng = np.random.default_rng(1)
    samples = 4 * params["batch"]
    X = rng.standard_normal((samples, params["n_in"])).astype(np.float32)
    y = np.arange(samples) % N_CLASSES
    path = folder / "spiking.npz"
    np.savez(path, X_train=X, y_train=y, X_test=X[:N_CLASSES], y_test=y[:N_CLASSES])
    return path


# --------------------------------------------------------------------------- the hand-written program


class SnnTorchProgram:
    """The network written by hand with snnTorch: ``snn.Leaky`` layers, a loop over the steps,
    spike counts into cross-entropy, autograd and ``torch.optim.Adam``.  ``layers``: per layer
    ``(W, b, pre)``: W (post, pre) dense with ``pre`` None, or (post, k) with ``pre`` the (post, k)
    presynaptic indices (the gather form of a fixed in-degree projection)."""

    def __init__(self, layers, steps: int, device: str, dtype):
        import snntorch as snn
        import torch
        from snntorch import surrogate

        self.torch, self.steps, self.device, self.dtype = torch, steps, device, dtype
        self.W = [torch.tensor(W, dtype=dtype, device=device, requires_grad=True) for W, _, _ in layers]
        self.b = [torch.tensor(b, dtype=dtype, device=device, requires_grad=True) for _, b, _ in layers]
        self.pre = [None if pre is None else torch.as_tensor(pre, dtype=torch.long, device=device)
                    for _, _, pre in layers]
        grad = surrogate.atan(alpha=ALPHA)
        self.lif = [snn.Leaky(beta=BETA, threshold=THRESHOLD, spike_grad=grad, reset_mechanism="subtract")
                    for _ in layers]
        self.optimizer = torch.optim.Adam(self.W + self.b, lr=LR)
        self.spikes = 0.0

    def _current(self, i: int, x):
        pre = self.pre[i]
        if pre is None:
            return x @ self.W[i].T + self.b[i]
        return (self.W[i] * x[:, pre]).sum(-1) + self.b[i]

    def tick(self, x, labels) -> float:
        """One training step on the batch ``x`` (B, n_in) with integer ``labels``."""
        torch = self.torch
        membranes = [lif.init_leaky() for lif in self.lif]
        count = 0
        spikes = 0
        for _ in range(self.steps):
            out = x
            for i, lif in enumerate(self.lif):
                out, membranes[i] = lif(self._current(i, out), membranes[i])
                out = out.to(self.dtype)  # (snnTorch's spikes are float32: a no-op unless float64)
                spikes = spikes + out.detach().sum()
            count = count + out
        loss = torch.nn.functional.cross_entropy(count, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.spikes = float(spikes)
        return loss.item()


def hand_program(network, biases: dict, steps: int, device: str, dtype: str = "float32") -> SnnTorchProgram:
    """The snnTorch program from ribbed's initial weights and biases."""
    import torch

    layers = []
    for p in network.projections:
        post = p.post.size
        if p.pre_idx.size == p.pre.size * post:  # all to all: canonical order is row-major (post, pre)
            layers.append((p.weights.reshape(post, p.pre.size), biases[p.post.name], None))
        else:  # fixed in-degree: each post neuron's k synapses, contiguous in canonical order
            layers.append((p.weights.reshape(post, -1), biases[p.post.name], p.pre_idx.reshape(post, -1)))
    return SnnTorchProgram(layers, steps, device, getattr(torch, dtype))


# --------------------------------------------------------------------------- one case (child process)


def ribbed_spikes(model) -> float:
    """The spikes of the tick just run, from the executor's per-step activity (the log's)."""
    values = model.executor.tick_values(activity=True, messages=False)["step_activity"]
    total = 0.0
    for name, info in model.network.populations.items():
        if info.role != "input":
            total += float(np.asarray(values[name]).sum())
    return total


def _program(scenario, params: dict, program: str, device: str, dtype: str):
    """(network, tick, spikes) of ``program`` built from ``scenario``: ``tick()`` runs one training
    tick and returns its loss, ``spikes()`` the spikes of the tick just run."""
    import torch

    import ribbed

    model = ribbed.NetworkModel(scenario)
    network = model.network
    if program != "snntorch":
        def tick() -> float:
            model.step()
            return float(model.last_result.loss)

        return network, tick, lambda: ribbed_spikes(model)
    from ribbed.environment.stream import DataStream

    biases = {name: model.executor.read("bias", name) for name in network.populations}
    hand = hand_program(network, biases, params["steps"], device, dtype)
    dataset = model.dataset
    inputs = torch.as_tensor(dataset.X_train, dtype=getattr(torch, dtype), device=device)
    labels = torch.as_tensor(dataset.y_train, dtype=torch.long, device=device)
    stream = DataStream(len(dataset.X_train), scenario.run.batch_size, scenario.seed)
    del model
    state = {"tick": 0}

    def hand_tick() -> float:
        index = torch.as_tensor(stream.indices(state["tick"]), device=device)
        state["tick"] += 1
        return hand.tick(inputs[index], labels[index])

    return network, hand_tick, lambda: hand.spikes


def run_case(label: str, params: dict, program: str, device: str, repeats: int, budget: float,
             dtype: str = "float32") -> dict:
    """Time ``program`` on one case in this process (``dtype``: the batched executor's and the
    snnTorch program's; the reference executor computes in float64)."""
    import torch

    import ribbed
    from ribbed.scenarios.size import estimate_size

    with tempfile.TemporaryDirectory() as folder:
        data = write_data(params, Path(folder))
        backend = "reference" if program == "reference" else "batched"
        scenario = ribbed.load_scenario(scenario_for(params, data, device, backend, dtype))
        estimate = estimate_size(scenario)
        start = time.perf_counter()
        network, tick, spikes = _program(scenario, params, program, device, dtype)
        setup = time.perf_counter() - start
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        losses = [tick() for _ in range(3)]
        sync()
        tick_spikes = spikes()
        times = []
        deadline = time.perf_counter() + budget
        while len(times) < repeats and (len(times) < 2 or time.perf_counter() < deadline):
            begin = time.perf_counter()
            tick()
            sync()
            times.append(time.perf_counter() - begin)
        neurons = network.n_neurons
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"seconds": statistics.median(times), "repeats": len(times), "third_loss": losses[2],
                "spikes_per_tick": tick_spikes, "setup_seconds": setup, "neurons": neurons,
                "synapses": network.n_synapses, "estimate_bytes": estimate.bytes,
                "estimate_bytes_per_neuron": estimate.bytes / neurons, "peak_rss_bytes": peak,
                "peak_rss_bytes_per_neuron": peak / neurons,
                "gpu_peak_bytes": torch.cuda.max_memory_allocated() if device.startswith("cuda") else None}


def run_interleaved(params: dict, device: str, repeats: int, budget: float, dtype: str = "float32") -> dict:
    """The batched executor's and the snnTorch program's ticks timed in turn in one process, so
    that both meet the same load on a shared machine: each one's median seconds per tick."""
    import torch

    import ribbed

    with tempfile.TemporaryDirectory() as folder:
        data = write_data(params, Path(folder))
        scenario = ribbed.load_scenario(scenario_for(params, data, device, "batched", dtype))
        ticks = {program: _program(scenario, params, program, device, dtype)[1] for program in ("batched", "snntorch")}
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        for tick in ticks.values():
            tick()
        sync()
        times: dict[str, list[float]] = {program: [] for program in ticks}
        deadline = time.perf_counter() + budget
        while len(times["batched"]) < repeats and (len(times["batched"]) < 2 or time.perf_counter() < deadline):
            for program, tick in ticks.items():
                begin = time.perf_counter()
                tick()
                sync()
                times[program].append(time.perf_counter() - begin)
        return {program: statistics.median(values) for program, values in times.items()}


# --------------------------------------------------------------------------- the driver


def child_command(label: str, program: str, args: argparse.Namespace) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", label, program,
            "--device", args.device, "--threads", str(args.threads), "--repeats", str(args.repeats)]


def compare(rows: dict[str, dict], params: dict) -> None:
    """Derived metrics, in place: ticks/s, spikes/s, synapse-updates/s, time over batched (each
    program in its own process) and, where measured, the same ratio from interleaved ticks."""
    base = rows.get("batched")
    for row in rows.values():
        row["ticks_per_s"] = 1.0 / row["seconds"]
        row["spikes_per_s"] = row["spikes_per_tick"] / row["seconds"]
        row["synapse_updates_per_s"] = row["synapses"] * params["batch"] * params["steps"] / row["seconds"]
        row["time_over_batched"] = row["seconds"] / base["seconds"] if base else None
        row["interleaved_over_batched"] = (row["interleaved_seconds"] / base["interleaved_seconds"]
                                           if base and "interleaved_seconds" in row and "interleaved_seconds" in base
                                           else None)
        if base:
            row["same_third_loss"] = bool(np.isclose(row["third_loss"], base["third_loss"], rtol=1e-3))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the smallest cases only, few repeats")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--programs", default=",".join(PROGRAMS), help="comma-separated subset of programs")
    parser.add_argument("--cases", default=None, help="comma-separated case labels (default: all)")
    parser.add_argument("--repeats", type=int, default=None, help="timed ticks per program (default 15, quick 3)")
    parser.add_argument("--no-interleave", action="store_true",
                        help="skip the interleaved timing of batched and snnTorch in one process")
    parser.add_argument("--json", default="benchmarks/results/spiking_throughput.json",
                        help="where to write the results")
    parser.add_argument("--child", nargs=2, metavar=("LABEL", "PROGRAM"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.repeats is None:
        args.repeats = 3 if args.quick else 15
    sys.path.insert(0, str(HERE))

    if args.child:
        label, program = args.child
        params = dict(CASES)[label]
        if program == "interleaved":
            result = run_interleaved(params, args.device, args.repeats, budget=120.0)
        else:
            result = run_case(label, params, program, args.device, repeats=args.repeats if program != "reference"
                              else min(args.repeats, 3), budget=60.0)
        print(json.dumps(result))
        return [result]

    programs = args.programs.split(",")
    wanted = set(args.cases.split(",")) if args.cases else (QUICK if args.quick else None)
    cases = [c for c in CASES if wanted is None or c[0] in wanted]
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"device: {args.device} ({device_name}), torch threads: {args.threads}, torch {torch.__version__}")
    print(f"{'case':26} {'program':10} {'ms/tick':>9} {'ticks/s':>8} {'spikes/s':>10} {'syn-upd/s':>10} "
          f"{'x batched':>9} {'x interl.':>9} {'est B/n':>8} {'peak B/n':>9}  loss at tick 3")
    results = []
    for label, params in cases:
        rows: dict[str, dict] = {}
        for program in programs:
            if program == "reference" and label not in REFERENCE_CASES:
                continue
            completed = subprocess.run(child_command(label, program, args), capture_output=True, text=True)
            if completed.returncode != 0:
                tail = " | ".join((completed.stderr.strip().splitlines() or ["killed (out of memory?)"])[-3:])
                print(f"{label:26} {program:10} failed: {tail}")
                continue
            rows[program] = json.loads(completed.stdout.strip().splitlines()[-1])
        if "batched" in rows and "snntorch" in rows and not args.no_interleave:
            completed = subprocess.run(child_command(label, "interleaved", args), capture_output=True, text=True)
            if completed.returncode == 0:
                interleaved = json.loads(completed.stdout.strip().splitlines()[-1])
                for program, seconds in interleaved.items():
                    rows[program]["interleaved_seconds"] = seconds
            else:
                print(f"{label:26} interleaved failed (memory for both programs at once?)")
        compare(rows, params)
        for program, row in rows.items():
            row.update(case=label, program=program, device=args.device, threads=args.threads, **params)
            results.append(row)
            ratios = " ".join(f"{row[key]:9.2f}" if row[key] is not None else f"{'-':>9}"
                              for key in ("time_over_batched", "interleaved_over_batched"))
            differs = "" if row.get("same_third_loss", True) else "  (differs from batched!)"
            print(f"{label:26} {program:10} {row['seconds'] * 1e3:9.2f} {row['ticks_per_s']:8.2f} "
                  f"{row['spikes_per_s']:10.3e} {row['synapse_updates_per_s']:10.3e} {ratios} "
                  f"{row['estimate_bytes_per_neuron']:8.0f} {row['peak_rss_bytes_per_neuron']:9.0f}  "
                  f"{row['third_loss']:.6g}{differs}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": args.device, "device_name": device_name, "threads": args.threads,
                               "torch": torch.__version__, "results": results}, indent=2))
    print("x batched: the program's tick time over the batched executor's, each in its own process; x interl.: "
          "the same ratio with their ticks interleaved in one process (the same load on a shared machine); "
          f"est/peak B/n: the size estimate's and the measured peak resident bytes per neuron. Results: {out}")
    return results


if __name__ == "__main__":
    main()
