"""Tick time of the Ray executor against its shard count, beside the batched executor.

The networks are the ``sparse`` family of benchmarks/throughput.py (its ``scenario_for`` and
``write_data`` build them): populations ``pre`` (input, n) -> ``post`` (output, n, identity), one
projection with in-degree k (fixed_in_degree), an MSE regression task from an npz, batch 1,
backprop, sgd.  For each size, the configurations are:

  batched    the batched executor, ``{kind: batched, device: cpu, dtype: float32, threads: 1}``:
             the single-process reference;
  ray S      the Ray executor with S = 1, 2, 4 shards, ``{kind: ray, shards: S, cpus_per_shard: 1,
             threads_per_shard: 1, dtype: float32, threads: 1}`` (12 partitions, the default;
             the partitioning, and so the results, do not depend on S).

What is timed: each configuration runs in its own child process (only one is alive at a time:
the 1e8-synapse network takes several GB, in the driver and again in the shards).  The child
builds ``ribbed.model.NetworkModel(scenario)`` (the Ray executor starts its own local Ray there,
with an object store of ``--object-store-mb``, by default 80 bytes per synapse), runs a few
warm-up ticks with ``model.step()``, then times repeats of K ticks each (K chosen from the
warm-up so that a repeat lasts at least ``repeat_s``); "ms/tick" is the median over repeats of
the repeat's time / K.  Model building, Ray's start and the warm-up are not in the figure.

For the Ray executor, the share of tick time spent exchanging data and waiting is
``1 - max over shards(compute seconds) / driver seconds`` over each repeat (median of repeats),
from the executor's ``shard_seconds()`` (each shard's cumulative time inside its stages) and
``seconds`` (the driver's wall time inside ``tick()``).  With more shards than cores (4 shards
on a 2-core machine) a shard's compute time, a wall-clock figure, also holds the time it waited
for a core, so the share is understated there.

Also reported: the partitioning (``model.executor.describe()``: neurons and synapses per shard,
cut synapses), the speedup of S shards over 1 shard and the ratio to the batched executor, the
loss at tick 3 (the Ray executor's equals the batched one's to float32 tolerance, and is the same
for every shard count), the build time, and the peak memory of the configuration (proportional
set size summed over the child and its descendants: the Ray processes and shards included,
sampled every 0.25 s during the build and warm-up, and after the timed ticks).

The issue's bar, on n=1e6 k=100: 2 shards tick >= 1.6x faster than 1 shard, and exchange is
<= 15% of the 2-shard tick.  The machine's other load shows in the numbers: the load average is
printed at the start, at each configuration's start and at the end.

    python benchmarks/ray_scaling.py            # n=1e5 k=100 and n=1e6 k=100, 5 repeats of >= 3 s (est. 10
                                                # minutes; several GB per 1e6 configuration, one at a time)
    python benchmarks/ray_scaling.py --quick    # n=1e4 k=100 and n=1e5 k=10, 3 repeats of 0.5 s (2-3 minutes on
                                                # 2 cores, most of it Ray and its shards starting: 10-25 s each)
    python benchmarks/ray_scaling.py --shards 1,2 --sizes "n=1e6 k=100"

Prints a table and writes JSON to benchmarks/results/ray_scaling.json.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (label, n, k) of the sparse network of each mode.
SIZES = {
    "full": [("n=1e5 k=100", 100_000, 100), ("n=1e6 k=100", 1_000_000, 100)],
    "quick": [("n=1e4 k=100", 10_000, 100), ("n=1e5 k=10", 100_000, 10)],
}
#: Warm-up ticks (at least 3: the third loss is compared), timed repeats, the least time of one
#: repeat, the least ticks of one repeat, and the most seconds a configuration's child may take.
MODES = {
    "quick": {"warmup": 3, "repeats": 3, "repeat_s": 0.5, "min_ticks": 3, "child_timeout_s": 300},
    "full": {"warmup": 3, "repeats": 5, "repeat_s": 3.0, "min_ticks": 3, "child_timeout_s": 3600},
}
SHARDS = (1, 2, 4)
#: The object store's default size per synapse: the shards' construction payload is about 20
#: bytes per synapse (all shards' blocks may sit in the store at once); the rest is slack.
STORE_BYTES_PER_SYNAPSE = 80
STORE_MIN_MB = 1000
#: The bar of the issue, checked on this size.
BAR_SIZE, BAR_SPEEDUP, BAR_EXCHANGE = "n=1e6 k=100", 1.6, 0.15


# --------------------------------------------------------------------------- memory of a process tree


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name, in parentheses, may hold spaces
        children.setdefault(ppid, []).append(int(entry))
    return children


def tree_pss_bytes(root: int) -> int:
    """The proportional set size (shared pages divided among their users, so that the sum is
    meaningful) of ``root`` and all its descendants, from /proc/PID/smaps_rollup; 0 where
    /proc cannot tell (not Linux)."""
    children = _children()
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            pass
    return total


class MemorySampler:
    """The largest :func:`tree_pss_bytes` of this process's tree, sampled by a thread while started."""

    def __init__(self, interval: float = 0.25):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        self.peak = max(self.peak, tree_pss_bytes(os.getpid()))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()


# --------------------------------------------------------------------------- one configuration (child process)


def backend_spec(shards: int | None, object_store_mb: int) -> dict:
    """The backend of a configuration: the batched executor (``shards`` None) or the Ray
    executor with ``shards`` shards, each on one CPU and one torch thread; the driver on one thread."""
    if shards is None:
        return {"kind": "batched", "device": "cpu", "dtype": "float32", "threads": 1}
    return {"kind": "ray", "shards": shards, "cpus_per_shard": 1, "threads_per_shard": 1, "dtype": "float32",
            "threads": 1, "object_store_mb": object_store_mb}


def run_config(n: int, k: int, shards: int | None, mode: dict, object_store_mb: int) -> dict:
    """Build the sparse network of size (n, k) on one configuration in this process, warm it up
    and time it (see the module docstring); returns seconds per tick and more."""
    import torch

    from ribbed.determinism import configure_torch
    from ribbed.model import NetworkModel
    from ribbed.scenarios.loader import load_scenario

    sys.path.insert(0, str(HERE))
    from throughput import scenario_for, write_data

    load = os.getloadavg()
    params = {"n": n, "k": k}
    memory = MemorySampler()
    with tempfile.TemporaryDirectory(prefix="ribbed-ray-scaling-") as folder:
        spec = scenario_for("sparse", params, write_data("sparse", params, Path(folder)), "cpu", "batched")
        spec["backend"] = backend_spec(shards, object_store_mb)
        scenario = load_scenario(spec)
        torch_settings = configure_torch(scenario.backend.threads)  # as ribbed.runner.run does
        memory.start()
        began = time.perf_counter()
        model = NetworkModel(scenario)
        build = time.perf_counter() - began
        executor = model.executor
        losses, warm = [], []
        for _ in range(mode["warmup"]):
            began = time.perf_counter()
            model.step()
            losses.append(model.last_result.loss)  # reading the loss waits for the tick's end
            warm.append(time.perf_counter() - began)
        memory.stop()
        # Ticks per repeat, from the warm-up ticks after the first (the first pays one-time costs).
        guess = min(warm[1:]) if len(warm) > 1 else warm[0]
        ticks = max(mode["min_ticks"], math.ceil(mode["repeat_s"] / guess))
        ray = shards is not None
        times, exchange, compute, driver = [], [], [], []
        for _ in range(mode["repeats"]):
            model._window.clear()  # the tick results kept for the next evaluation (none runs here)
            if ray:
                shard_before, driver_before = executor.shard_seconds(), executor.seconds
            began = time.perf_counter()
            for _ in range(ticks):
                model.step()
            model.last_result.loss  # noqa: B018 - the last tick's end (the Ray executor's ticks end in a get)
            times.append((time.perf_counter() - began) / ticks)
            if ray:
                shard_after, driver_after = executor.shard_seconds(), executor.seconds
                spent = [a - b for a, b in zip(shard_after, shard_before)]
                wall = driver_after - driver_before
                compute.append([s / ticks for s in spent])
                driver.append(wall / ticks)
                exchange.append(1.0 - max(spent) / wall)
        memory.sample()
        network = model.network
        row = {
            "n": n, "k": k, "config": "batched" if shards is None else f"ray {shards}", "shards": shards,
            "backend": spec["backend"], "seconds": statistics.median(times), "seconds_all": times,
            "ticks_per_repeat": ticks, "repeats": len(times), "warmup_seconds": warm, "losses": losses,
            "third_loss": losses[2], "build_seconds": build, "neurons": network.n_neurons,
            "synapses": int(network.n_synapses), "torch": torch.__version__, "torch_settings": torch_settings,
            "peak_tree_pss_gib": memory.peak / 2**30,
            "driver_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "loadavg_start": load,
        }
        if ray:
            shard_seconds = [statistics.median(c[i] for c in compute) for i in range(shards)]
            row.update(exchange_share=statistics.median(exchange), exchange_share_all=exchange,
                       shard_compute_seconds=shard_seconds, driver_seconds=statistics.median(driver),
                       describe=executor.describe())
        # The executor's shards and the Ray it started go when this process exits (the executor's
        # finalizer).  close() is not called: it first copies every shard's state into a batched
        # executor on the driver (a second copy of the whole network).
        return row


# --------------------------------------------------------------------------- the driver


def child_command(label: str, shards: int | None, args: argparse.Namespace) -> list[str]:
    """The command line of one configuration's child process."""
    config = "batched" if shards is None else str(shards)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", label, config]
    if args.quick:
        command.append("--quick")
    if args.object_store_mb is not None:
        command += ["--object-store-mb", str(args.object_store_mb)]
    return command


def run_child(command: list[str], timeout: float) -> tuple[dict | None, str]:
    """Run one configuration's child (in its own process group, so that on a timeout the Ray
    processes it started go with it); its result (with the child's whole wall time, Ray's start
    and stop included, as ``child_seconds``), or None and why."""
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None, f"timed out after {timeout:.0f} s"
    if process.returncode != 0:
        return None, f"exit {process.returncode}: " + "\n".join(err.strip().splitlines()[-25:])
    row = json.loads(out.strip().splitlines()[-1])
    row["child_seconds"] = time.perf_counter() - began
    return row, ""


def bandwidth_scaling(repeats: int) -> dict:
    """The roofline of sharding on this machine: main-memory bandwidth (roofline.stream_triad, one
    torch thread) of one process alone, and of each of two processes running at the same time.
    A tick limited by memory traffic cannot run faster on 2 shards than the two processes'
    summed bandwidth over one's."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "bandwidth", str(repeats)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}

    def measure(count: int) -> list[float]:
        children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) for _ in range(count)]
        return [json.loads(child.communicate(timeout=300)[0].strip().splitlines()[-1])["gb_s"] for child in children]

    one = measure(1)[0]
    two = measure(2)
    return {"one": one, "two_each": two, "bound": sum(two) / one}


def store_mb(synapses: int) -> int:
    """The object store given to the Ray executor for a network of ``synapses``."""
    return max(STORE_MIN_MB, math.ceil(synapses * STORE_BYTES_PER_SYNAPSE / 2**20))


def print_row(label: str, row: dict, base: dict | None, one: dict | None, cores: int) -> None:
    """One configuration's line of the table."""
    shards = row["shards"]
    name = row["config"] + (" *" if shards is not None and shards > cores else "")
    over_batched = f"{row['seconds'] / base['seconds']:9.2f}" if base else f"{'-':>9}"
    speedup = f"{one['seconds'] / row['seconds']:8.2f}" if one and shards else f"{'-':>8}"
    if shards is not None:
        exchange = f"{row['exchange_share']:8.1%}"
        compute = f"{max(row['shard_compute_seconds']) * 1e3:10.2f}"
    else:
        exchange, compute = f"{'-':>8}", f"{'-':>10}"
    same = ""
    if base and shards is not None and not math.isclose(row["third_loss"], base["third_loss"], rel_tol=1e-3):
        same = "  (differs from batched!)"
    print(f"{label:12} {name:9} {row['seconds'] * 1e3:9.2f} {row['synapses'] / row['seconds']:12.3e} {over_batched} "
          f"{speedup} {exchange} {compute} {row['ticks_per_repeat']:5d}x{row['repeats']:<2d} "
          f"{row['build_seconds']:7.1f} {row['peak_tree_pss_gib']:7.2f} {row['loadavg_start'][0]:5.2f}  "
          f"{row['third_loss']:.6g}{same}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, short repeats (2-3 minutes)")
    parser.add_argument("--shards", default=",".join(map(str, SHARDS)), help="comma-separated shard counts")
    parser.add_argument("--sizes", default=None, help="comma-separated size labels (default: the mode's)")
    parser.add_argument("--no-batched", action="store_true", help="skip the batched executor")
    parser.add_argument("--object-store-mb", type=int, default=None,
                        help=f"Ray's object store (default: {STORE_BYTES_PER_SYNAPSE} bytes per synapse, "
                             f"at least {STORE_MIN_MB} MB)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/ray_scaling.json"))
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    mode_name = "quick" if args.quick else "full"
    mode = MODES[mode_name]
    all_sizes = {label: (n, k) for sizes in SIZES.values() for label, n, k in sizes}

    if args.child and args.child[0] == "bandwidth":
        import torch

        torch.set_num_threads(1)
        from roofline import stream_triad

        print(json.dumps({"gb_s": stream_triad("cpu", n=2**25, repeats=int(args.child[1]))}), flush=True)
        return
    if args.child:
        label, config = args.child
        n, k = all_sizes[label]
        shards = None if config == "batched" else int(config)
        row = run_config(n, k, shards, mode, args.object_store_mb or store_mb(n * k))
        print(json.dumps(row), flush=True)
        return

    wanted = args.sizes.split(",") if args.sizes else [label for label, _, _ in SIZES[mode_name]]
    unknown = [label for label in wanted if label not in all_sizes]
    if unknown:
        parser.error(f"unknown size {unknown[0]!r}; known: {', '.join(all_sizes)}")
    shard_counts = [int(s) for s in args.shards.split(",")]
    configs: list[int | None] = ([] if args.no_batched else [None]) + shard_counts
    cores = os.cpu_count() or 1
    import torch

    ray_version = importlib.metadata.version("ray")  # without importing Ray into this process
    began = time.perf_counter()
    load = os.getloadavg()
    print(f"Ray executor scaling ({mode_name}): {cores} cores, torch {torch.__version__}, ray {ray_version}; "
          f"{mode['warmup']} warm-up ticks, median of {mode['repeats']} repeats of >= {mode['repeat_s']:g} s; "
          f"load average {load[0]:.2f} {load[1]:.2f}")
    if load[0] > 0.5 * cores:
        print(f"note: the machine is busy (load {load[0]:.1f} on {cores} cores): tick times and ratios are noisy")
    if max(shard_counts) > cores:
        print(f"note: * = more shards than cores ({cores}): the shards share cores, and their compute time "
              "includes waiting for one")
    bandwidth = bandwidth_scaling(5 if args.quick else 15)
    print(f"memory bandwidth (STREAM triad, one thread per process): {bandwidth['one']:.1f} GB/s alone, "
          f"{bandwidth['two_each'][0]:.1f} + {bandwidth['two_each'][1]:.1f} GB/s for two processes at once; a "
          f"memory-bound tick on 2 shards can be at most x{bandwidth['bound']:.2f} faster than on 1 (the roofline)")
    print(f"\n{'size':12} {'config':9} {'ms/tick':>9} {'syn-upd/s':>12} {'x batched':>9} {'x 1 shard':>8} "
          f"{'exchange':>8} {'shard ms':>10} {'ticks':>8} {'build s':>7} {'peak GiB':>7} {'load':>5}  loss at tick 3")
    results: list[dict] = []
    for label in wanted:
        n, k = all_sizes[label]
        rows: dict[int | None, dict] = {}
        for shards in configs:
            row, why = run_child(child_command(label, shards, args), mode["child_timeout_s"])
            if row is None:
                print(f"{label:12} {'batched' if shards is None else f'ray {shards}':9} failed: {why}", flush=True)
                continue
            row["size"] = label
            rows[shards] = row
            print_row(label, row, rows.get(None), rows.get(1), cores)
        base, one = rows.get(None), rows.get(1)
        for shards, row in rows.items():
            row["over_batched"] = row["seconds"] / base["seconds"] if base else None
            row["speedup_over_1_shard"] = one["seconds"] / row["seconds"] if one and shards else None
            if base:
                row["same_third_loss_as_batched"] = math.isclose(row["third_loss"], base["third_loss"], rel_tol=1e-3)
            results.append(row)
        ray_losses = {row["third_loss"] for shards, row in rows.items() if shards is not None}
        if len(ray_losses) > 1:
            print(f"{'':12} note: the Ray executor's loss at tick 3 differs between shard counts: {sorted(ray_losses)}")
        for shards, row in rows.items():
            if shards is None:
                continue
            part = row["describe"]["partitioning"]
            print(f"{'':12} ray {shards}: {part['partitions']} partitions; neurons per shard "
                  f"{part['neurons_per_shard']}, synapses per shard {part['synapses_per_shard']}, "
                  f"cut {part['cut_synapses']:,d} of {part['synapses']:,d} ({part['cut_fraction']:.1%})")
        if 1 in rows and 2 in rows:
            speedup, exchange = rows[1]["seconds"] / rows[2]["seconds"], rows[2]["exchange_share"]
            verdict = "PASS" if speedup >= BAR_SPEEDUP and exchange <= BAR_EXCHANGE else "FAIL"
            applies = "" if label == BAR_SIZE else f"  (the bar is set on {BAR_SIZE}; here for information)"
            print(f"{'':12} bar: 2 shards >= {BAR_SPEEDUP}x 1 shard and exchange <= {BAR_EXCHANGE:.0%}: "
                  f"{verdict} (x{speedup:.2f}, exchange {exchange:.1%}){applies}", flush=True)
    end_load = os.getloadavg()
    seconds = time.perf_counter() - began
    print("\nms/tick: median over repeats; syn-upd/s: synapses / tick time; x batched: tick time over the batched "
          "executor's;\nx 1 shard: 1-shard tick time over this one's (speedup); exchange: 1 - slowest shard's compute "
          "/ driver's tick time;\nshard ms: the slowest shard's compute per tick; ticks: per repeat x repeats; "
          "peak GiB: PSS of the configuration's processes.")
    print(f"{seconds:.0f} s in all; load average at the end {end_load[0]:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "mode": mode_name, "cores": cores, "machine": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "ray": ray_version, "settings": mode, "sizes": wanted,
        "loadavg_start": load, "loadavg_end": end_load, "seconds": seconds, "memory_bandwidth": bandwidth,
        "bar": {"size": BAR_SIZE, "speedup_2_over_1": BAR_SPEEDUP, "exchange_share": BAR_EXCHANGE},
        "results": results}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
