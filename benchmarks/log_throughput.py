"""What the message log (ribbed.log) costs: writing, reading, a run's tick time, bytes, filtering.

Every figure times ribbed's real code paths:

1. write  ``LogWriter`` appending tick records shaped like the ones runs write (an activity record
          of the 1e6-neuron sparse network, a wide batched one, and a digits tick of ~20 KB): MB/s
          of bytes on disk, from the first write to ``close()`` (pack, CRC-32, SHA-256 chain,
          unbuffered write, end record and index), into the page cache (no fsync; the figure with
          an fsync after close is printed beside it), median of repeats; plus each stage alone.
2. read   real digits logs written by ``ribbed.runner.run`` at level activity and messages:
          ``LogReader.check()`` (read every record, CRC, digest chain, unpack) in MB/s, messages/s
          expanded by ``ribbed.log.messages.iter_messages`` (columnar blocks) over the whole log,
          and ``LogReader.messages()`` (a DataFrame) against the columnar path on the same ticks.
3. ticks  per-tick time of the batched executor with a ``LogRecorder`` attached at each level
          against no recorder (level off), for the built-in ``digits`` scenario (float32, batch 32)
          and the 1e6-neuron in-degree-100 sparse network of benchmarks/throughput.py (batch 1; its
          messages level is skipped: it copies all 1e8 weights every tick).  One model per
          network; the levels take turns in rounds (a different one first each round), each turn
          ``model.step()`` a few times, then ``writer.flush()`` (so the writer thread's work is
          counted), divided by the ticks; medians over rounds, ratios to off (of the medians, and
          the median of the per-round ratios).  No evaluation runs in the timed loop; the one-time
          costs (model build, header, topology record) and a snapshot (taken at an evaluation) are
          timed separately.  Each network runs in its own process.
4. bytes  bytes per tick at each level (from the same runs), and the time to open a large digits
          log and filter one agent out of it (``open_log(path).messages(agent=17)``, and with a
          tick range), with its sidecar index and without (the reader then scans and checks the
          whole file).

Bars: write >= 500 MB/s for the columnar (MB-sized) records; iter_messages >= 1e7 messages/s;
activity level <= 10% over off on both networks.  The machine's other load shows in the
numbers (the load average is printed).

    python benchmarks/log_throughput.py            # full: 1e6 network, 4000-tick logs (est. 3-5 min, ~8 GB RAM)
    python benchmarks/log_throughput.py --quick    # small sizes, few repeats, a 1e4-neuron sparse
                                                   # network in place of 1e6 (< 1 minute)
    python benchmarks/log_throughput.py --threads 1  # torch on one core, the log's writer thread on the other
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LEVELS = ("off", "summary", "activity", "messages")
AGENT = 17

#: Sizes and repeats of each mode.  A turn ends with a flush (so that all of its records are
#: counted): digits turns are long enough (0.1-0.4 s) that the flush's round trip to the writer
#: does not weigh on the per-tick figure.
MODES = {
    "quick": {"write_records": {"activity 1e6 sparse": 4, "activity 32x32768": 8, "digits activity": 500},
              "write_repeats": 3, "log_ticks": 200, "frame_ticks": 50, "read_repeats": 2,
              "sparse_n": 10_000, "rounds": {"digits": 5, "sparse": 5}, "round_ticks": {"digits": 400, "sparse": 10},
              "warmup": 2, "snapshots": 2},
    "full": {"write_records": {"activity 1e6 sparse": 40, "activity 32x32768": 100, "digits activity": 20_000},
             "write_repeats": 5, "log_ticks": 4000, "frame_ticks": 250, "read_repeats": 5,
             "sparse_n": 1_000_000, "rounds": {"digits": 11, "sparse": 7}, "round_ticks": {"digits": 2000, "sparse": 4},
             "warmup": 2, "snapshots": 2},
}


# --------------------------------------------------------------------------- helpers


def median(values) -> float:
    return statistics.median(values)


def filesystem(path: Path) -> str:
    """The file system ``path`` is on (type and device), from /proc/mounts."""
    target = os.path.realpath(path)
    best = ("?", "?", "")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind = line.split()[:3]
            if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best[2]):
                best = (kind, device, mount)
    except OSError:
        pass
    return f"{best[0]} on {best[1]}"


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mb(n: float) -> float:
    return n / 1e6


def tick_sizes(path: Path) -> list[int]:
    """The sizes of the tick records of a closed log (from its index)."""
    from ribbed.log.reader import LogReader

    with LogReader(path) as log:
        return [ref.size for ref in log.refs if ref.type == "tick"]


# --------------------------------------------------------------------------- 1. write


def tick_like_bodies(case: str, count: int) -> list[dict]:
    """Distinct bodies shaped like ``records.tick_body``'s (different arrays, so that the
    writer does not read the same bytes from cache every time)."""
    from ribbed.scheduler.messages import Kind

    rng = np.random.default_rng(0)
    batch, outputs, activation = {"activity 1e6 sparse": (1, 1_000_000, 2_000_000),
                                  "activity 32x32768": (32, 10, 32_768),
                                  "digits activity": (32, 10, 138)}[case]
    bodies = []
    for i in range(count):
        bodies.append({"tick": i, "backward": True, "loss": float(rng.random()),
                       "counts": rng.integers(0, 10**6, len(Kind)), "batch": rng.integers(0, 1437, batch),
                       "outputs": rng.standard_normal((batch, outputs), dtype=np.float32),
                       "activation": rng.standard_normal((batch, activation), dtype=np.float32)})
    return bodies


def write_case(case: str, records: int, repeats: int, folder: Path) -> dict:
    from ribbed.log.format import DIGEST_SEED, FORMAT, VERSION, body_digest, crc, pack_body
    from ribbed.log.reader import LogReader
    from ribbed.log.writer import LogWriter

    # More distinct bodies than the CPU caches hold (for the MB-sized ones).
    distinct = min(records, {"activity 1e6 sparse": 6, "activity 32x32768": 16}.get(case, 64))
    bodies = tick_like_bodies(case, distinct)
    header = {"tick": -1, "format": FORMAT, "version": VERSION, "level": "activity", "batch_size": 1}
    speeds, durable, sizes = [], [], []
    check_speed = None
    for repeat in range(repeats):
        path = folder / f"write-{repeat}.log"
        writer = LogWriter(path, header)
        writer.flush()
        start = time.perf_counter()
        for i in range(records):
            body = bodies[i % distinct]
            writer.write("tick", i, lambda body=body, i=i: {**body, "tick": i})  # a shallow copy
        writer.close("completed", records)
        closed = time.perf_counter()
        fsync(path)
        synced = time.perf_counter()
        size = path.stat().st_size
        speeds.append(mb(size) / (closed - start))
        durable.append(mb(size) / (synced - start))
        sizes.append(size)
        if repeat == repeats - 1:  # reading these records back (from the page cache)
            with LogReader(path) as log:
                begin = time.perf_counter()
                log.check()
                check_speed = mb(size) / (time.perf_counter() - begin)
        path.unlink()
        Path(str(path) + ".idx").unlink(missing_ok=True)
    # Each stage alone, on one record (median of several).
    data = pack_body(bodies[0])
    stages = {}
    for name, work in [("pack", lambda: pack_body(bodies[0])), ("crc", lambda: crc(data)),
                       ("sha256", lambda: body_digest(DIGEST_SEED, data))]:
        stages[name] = mb(len(data)) / median(_timed(work, 9 if len(data) > 1 << 20 else 200))
    raw = folder / "raw.bin"
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        stages["write"] = mb(len(data)) / median(_timed(lambda: os.write(fd, data), 9 if len(data) > 1 << 20 else 200))
    finally:
        os.close(fd)
        raw.unlink()
    return {"case": case, "records": records, "record_bytes": len(data), "file_bytes": median(sizes),
            "mb_s": median(speeds), "mb_s_all": speeds, "mb_s_fsync": median(durable),
            "check_mb_s": check_speed, "stages_mb_s": stages, "repeats": repeats}


def _timed(work, n: int) -> list[float]:
    work()
    times = []
    for _ in range(n):
        begin = time.perf_counter()
        work()
        times.append(time.perf_counter() - begin)
    return times


# --------------------------------------------------------------------------- 2 and 4. reading real logs


def digits_spec(device: str, level: str = "off", ticks: int = 2000) -> dict:
    import ribbed

    spec = ribbed.load_scenario("digits").model_dump(mode="json", exclude_none=True)
    spec["backend"].update(kind="batched", device=device, dtype="float32")
    spec["run"].update(ticks=ticks, batch_size=32)
    spec["log"] = {"level": level}
    spec["output"]["agent_metrics"] = False
    return spec


def write_digits_log(level: str, ticks: int, device: str, folder: Path) -> tuple[Path, float]:
    from ribbed.runner import run

    start = time.perf_counter()
    result = run(digits_spec(device, level, ticks), out=folder / f"digits-{level}")
    return result.directory / "run.log", time.perf_counter() - start


class _NoIndex:
    """The log's sidecar index moved away while in the block."""

    def __init__(self, path: Path):
        self.index = Path(str(path) + ".idx")
        self.aside = Path(str(path) + ".idx.aside")

    def __enter__(self):
        os.replace(self.index, self.aside)

    def __exit__(self, *exc):
        os.replace(self.aside, self.index)


def read_case(path: Path, level: str, mode: dict) -> dict:
    from ribbed.log import LogReader, open_log
    from ribbed.log.messages import iter_messages

    repeats = mode["read_repeats"]
    size = path.stat().st_size
    row: dict = {"level": level, "log_bytes": size}
    with LogReader(path) as log:
        ticks = log.ticks
        row.update(ticks=len(ticks), records=len(log.refs))

    def open_close():
        LogReader(path).close()

    row["open_index_s"] = median(_timed(open_close, repeats))
    with _NoIndex(path):
        row["open_scan_s"] = median(_timed(open_close, repeats))

    def check():
        with LogReader(path) as log:
            log.check()

    row["check_s"] = median(_timed(check, repeats))
    row["check_mb_s"] = mb(size) / row["check_s"]

    counted = {}

    def columnar(ticks=None):
        with LogReader(path) as log:
            n = values = 0
            for block in iter_messages(log, ticks=ticks):
                n += len(block)
                values += block["payload"].size
            counted["messages"], counted["values"] = n, values

    row["iter_s"] = median(_timed(columnar, repeats))
    row["messages"] = counted["messages"]
    row["iter_msg_s"] = counted["messages"] / row["iter_s"]
    row["iter_values_s"] = counted["values"] / row["iter_s"]
    # The DataFrame against the columnar path on the same (shorter) tick range, side by side.
    span = (0, min(mode["frame_ticks"], len(ticks)))
    frame_rows = {}

    def frame():
        with LogReader(path) as log:
            frame_rows["n"] = len(log.messages(ticks=span))

    frame_times, columnar_times = [], []
    for _ in range(repeats):
        columnar_times.append(_timed(lambda: columnar(span), 1)[0])
        frame_times.append(_timed(frame, 1)[0])
    row.update(frame_ticks=span[1], frame_messages=frame_rows["n"], frame_s=median(frame_times),
               frame_msg_s=frame_rows["n"] / median(frame_times),
               frame_columnar_msg_s=counted["messages"] / median(columnar_times))
    row["frame_over_columnar"] = median(frame_times) / median(columnar_times)
    # 4. one agent out of the whole log, and out of a range of ticks; with and without the index.
    last = len(ticks)
    window = (last // 4, last // 4 + max(10, last // 40))
    filters = {}
    for name, query in [("agent", {"agent": AGENT}), ("agent+ticks", {"agent": AGENT, "ticks": window})]:
        for indexed in (True, False):
            result = {}

            def filtered():
                begin = time.perf_counter()
                log = open_log(path)
                opened = time.perf_counter()
                result["rows"] = len(log.messages(**query))
                log.close()
                result.setdefault("open", []).append(opened - begin)

            if indexed:
                times = _timed(filtered, repeats)
            else:
                with _NoIndex(path):
                    times = _timed(filtered, repeats)
            filters[f"{name} {'index' if indexed else 'scan'}"] = {
                "s": median(times), "open_s": median(result["open"]), "rows": result["rows"],
                "ticks": list(window) if "ticks" in query else None}
    row["filters"] = filters
    return row


# --------------------------------------------------------------------------- 3. tick overhead (child process)


def tick_overhead(network: str, mode: dict, device: str, threads: int | None, tmp: str) -> dict:
    import torch

    import ribbed
    from ribbed.determinism import configure_torch
    from ribbed.log.records import header_body, topology_body
    from ribbed.log.recorder import LogRecorder
    from ribbed.log.run_log import open_writer

    torch_settings = configure_torch(threads)  # as ribbed.runner.run does, whatever the level
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with tempfile.TemporaryDirectory(dir=tmp, prefix="ribbed-log-bench-") as folder:
        folder = Path(folder)
        if network == "digits":
            spec, levels, label = digits_spec(device), LEVELS, "digits 64-64-10 B32"
        else:
            sys.path.insert(0, str(HERE))
            from throughput import scenario_for, write_data

            params = {"n": mode["sparse_n"], "k": 100}
            spec = scenario_for("sparse", params, write_data("sparse", params, folder), device, "batched")
            levels, label = LEVELS[:3], f"sparse n={params['n']:.0e} k=100 B1"
        start = time.perf_counter()
        model = ribbed.NetworkModel(ribbed.load_scenario(spec))
        build = time.perf_counter() - start
        writers, one_time = {}, {}
        for level in levels[1:]:
            begin = time.perf_counter()
            # The writer a run would use (a writer process on the CPU, a thread on a GPU).
            writer = open_writer(folder / f"{level}.log", model, level, header_body(model, level, torch_settings))
            writer.flush()
            header = time.perf_counter()
            costs = {"header_s": header - begin, "header_bytes": writer.path.stat().st_size}
            if level in ("activity", "messages"):  # as ribbed.log.run_log.open_run_log
                topology = topology_body(model)
                built = time.perf_counter()
                writer.write("topology", -1, lambda: topology)
                writer.flush()
                del topology
                costs.update(topology_body_s=built - header, topology_s=time.perf_counter() - header,
                             topology_bytes=writer.path.stat().st_size - costs["header_bytes"])
            writers[level], one_time[level] = writer, costs

        def turn(level: str, ticks: int) -> float:
            writer = writers.get(level)
            model.recorder = None if writer is None else LogRecorder(model, level, 10**9, writer)
            model._window.clear()  # what an evaluation would read (none runs here)
            sync()
            begin = time.perf_counter()
            for _ in range(ticks):
                model.step()
            if writer is not None:
                writer.flush()
            sync()
            seconds = time.perf_counter() - begin
            model.recorder = None
            return seconds / ticks

        for level in levels:
            turn(level, mode["warmup"])
        times = {level: [] for level in levels}
        ticks = mode["round_ticks"]["digits" if network == "digits" else "sparse"]
        rounds = mode["rounds"]["digits" if network == "digits" else "sparse"]
        for r in range(rounds):
            for level in levels[r % len(levels):] + levels[:r % len(levels)]:
                times[level].append(turn(level, ticks))
        model._window.clear()
        # A snapshot (taken after an evaluation in a run): the copy on the run's thread, then the
        # writer thread's pack, hash, write and index rewrite.
        writer = writers["summary"]
        recorder = LogRecorder(model, "summary", 1, writer)
        snapshots = []
        for _ in range(mode["snapshots"]):
            before = writer.path.stat().st_size
            begin = time.perf_counter()
            recorder.after_record()
            taken = time.perf_counter()
            writer.flush()
            snapshots.append({"take_s": taken - begin, "write_s": time.perf_counter() - taken,
                              "bytes": writer.path.stat().st_size - before})
        closing = {}
        for level, writer in writers.items():
            begin = time.perf_counter()
            writer.close("completed", model.tick)
            closing[level] = time.perf_counter() - begin
        rows = []
        off = median(times["off"])
        for level in levels:
            writer = writers.get(level)
            sizes = tick_sizes(writer.path) if writer is not None else [0]
            paired = [t / o for t, o in zip(times[level], times["off"])]
            rows.append({"network": label, "level": level, "tick_s": median(times[level]), "tick_s_all": times[level],
                         "over_off": median(times[level]) / off, "over_off_paired": median(paired),
                         "tick_bytes": median(sizes), "ticks_per_turn": ticks, "rounds": rounds,
                         **one_time.get(level, {})})
        for level, seconds in closing.items():
            rows[levels.index(level)]["close_s"] = seconds
        return {"network": label, "neurons": model.network.n_neurons, "synapses": model.network.n_synapses,
                "build_s": build, "snapshot": {k: median([s[k] for s in snapshots]) for k in snapshots[0]},
                "skipped": [] if network == "digits" else ["messages"], "rows": rows, "torch": torch_settings,
                "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


# --------------------------------------------------------------------------- the driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (under a minute)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--tmp", default="/tmp" if os.path.isdir("/tmp") else None, help="where logs are written")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/log_throughput.json"))
    parser.add_argument("--child", choices=["digits", "sparse"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    mode = MODES["quick" if args.quick else "full"]

    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(tick_overhead(args.child, mode, args.device, args.threads, args.tmp)))
        return

    began = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(dir=args.tmp, prefix="ribbed-log-bench-"))
    load = os.getloadavg()
    print(f"ribbed log benchmark ({'quick' if args.quick else 'full'}): device {args.device}, "
          f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads); "
          f"logs in {tmp.parent} ({filesystem(tmp)}); load average {load[0]:.2f} {load[1]:.2f}")
    if load[0] > 0.5 * (os.cpu_count() or 1):
        print(f"note: the machine is busy (load {load[0]:.1f} on {os.cpu_count()} cores): tick-time ratios are noisy; "
              "--threads 1 leaves the log's writer thread a core")
    results: dict = {"mode": "quick" if args.quick else "full", "device": args.device, "cores": os.cpu_count(),
                     "machine": platform.platform(), "filesystem": filesystem(tmp), "tmp": str(tmp.parent),
                     "loadavg_start": load}
    try:
        # ---- 1. write
        print("\n1. write: LogWriter, first write to close() (pack + CRC-32 + SHA-256 + write + index), page cache;"
              f" median of {mode['write_repeats']}")
        print(f"{'record':22} {'bytes/rec':>10} {'records':>8} {'MB/s':>8} {'+fsync':>8} {'check MB/s':>10}"
              f"   stages alone, MB/s: pack / crc / sha256 / write")
        writes = []
        for case, records in mode["write_records"].items():
            row = write_case(case, records, mode["write_repeats"], tmp)
            writes.append(row)
            s = row["stages_mb_s"]
            print(f"{case:22} {row['record_bytes']:10,d} {records:8d} {row['mb_s']:8.0f} {row['mb_s_fsync']:8.0f} "
                  f"{row['check_mb_s']:10.0f}   {s['pack']:.0f} / {s['crc']:.0f} / {s['sha256']:.0f} / "
                  f"{s['write']:.0f}", flush=True)
        columnar = [r for r in writes if r["record_bytes"] > 1 << 20]
        worst = min(r["mb_s"] for r in columnar)
        print(f"   bar >= 500 MB/s for the MB-sized records: {'PASS' if worst >= 500 else 'FAIL'} (lowest {worst:.0f})")
        results["write"] = writes

        # ---- 3 (children first: the 1e6 network wants the memory while nothing else holds any)
        overhead = []
        for network in ("digits", "sparse"):
            command = [sys.executable, str(Path(__file__).resolve()), "--child", network, "--device", args.device,
                       "--tmp", str(tmp)] + (["--quick"] if args.quick else []) \
                + (["--threads", str(args.threads)] if args.threads else [])
            completed = subprocess.run(command, capture_output=True, text=True)
            if completed.returncode != 0:
                print(f"tick overhead on {network} failed: {completed.stderr.strip()[-2000:]}")
                continue
            overhead.append(json.loads(completed.stdout.strip().splitlines()[-1]))
        results["ticks"] = overhead

        # ---- 2 and 4 on real digits logs
        logs = {}
        for level in ("activity", "messages"):
            logs[level], seconds = write_digits_log(level, mode["log_ticks"], args.device, tmp)
            results.setdefault("log_runs", {})[level] = {"ticks": mode["log_ticks"], "run_s": seconds,
                                                         "bytes": logs[level].stat().st_size}
        reads = [read_case(logs[level], level, mode) for level in logs]
        results["read"] = reads
        print(f"\n2. read: digits logs of {mode['log_ticks']} ticks written by ribbed.runner.run (page cache);"
              f" median of {mode['read_repeats']}")
        print(f"{'level':9} {'log MB':>7} {'open ms':>8} {'no-idx ms':>9} {'check MB/s':>10} {'messages':>11} "
              f"{'iter msg/s':>11} {'values/s':>9}   DataFrame (ticks 0..{mode['frame_ticks']}): msg/s  x slower")
        for row in reads:
            print(f"{row['level']:9} {mb(row['log_bytes']):7.1f} {row['open_index_s'] * 1e3:8.1f} "
                  f"{row['open_scan_s'] * 1e3:9.1f} {row['check_mb_s']:10.0f} {row['messages']:11,d} "
                  f"{row['iter_msg_s']:11.3e} {row['iter_values_s']:9.2e}   {row['frame_msg_s']:.3e}  "
                  f"x{row['frame_over_columnar']:.1f}")
        worst = min(r["iter_msg_s"] for r in reads)
        print(f"   bar >= 1e7 messages/s (iter_messages): {'PASS' if worst >= 1e7 else 'FAIL'} (lowest {worst:.3e})")

        # ---- 3 printed
        print("\n3. tick time by log level (batched executor; model.step() x ticks, then writer.flush(); "
              "rounds interleave the levels)")
        print(f"{'network':26} {'level':9} {'ms/tick':>9} {'x off':>7} {'paired':>7} {'bytes/tick':>11} "
              f"{'MB/s':>7}   one-time: header ms, topology s / MB")
        bars = []
        for case in overhead:
            for row in case["rows"]:
                rate = mb(row["tick_bytes"]) / row["tick_s"] if row["tick_s"] else 0
                once = ""
                if "header_s" in row:
                    once = f"{row['header_s'] * 1e3:.1f}"
                if "topology_s" in row:
                    once += f", {row['topology_s']:.2f} s / {mb(row['topology_bytes']):.1f} MB"
                print(f"{row['network']:26} {row['level']:9} {row['tick_s'] * 1e3:9.3f} {row['over_off']:7.3f} "
                      f"{row['over_off_paired']:7.3f} {row['tick_bytes']:11,.0f} {rate:7.1f}   {once}")
                if row["level"] == "activity":
                    bars.append((case["network"], row["over_off"]))
            snap = case["snapshot"]
            print(f"{'':26} build {case['build_s']:.1f} s; snapshot: take {snap['take_s'] * 1e3:.1f} ms + write "
                  f"{snap['write_s'] * 1e3:.1f} ms, {mb(snap['bytes']):.1f} MB; {case['neurons']:,d} neurons, "
                  f"{case['synapses']:,d} synapses; peak {case['peak_rss_gib']:.2f} GiB"
                  + (f"; skipped: {', '.join(case['skipped'])} (weights copied every tick)" if case["skipped"] else ""))
        if bars:
            print("   bar activity <= 1.10 x off: " + ", ".join(
                f"{name}: {'PASS' if ratio <= 1.10 else 'FAIL'} ({ratio:.3f})" for name, ratio in bars))

        # ---- 4 printed
        print(f"\n4. filtering agent {AGENT} out of the logs above: open_log(path).messages(...), open + query, "
              f"median of {mode['read_repeats']}")
        print(f"{'level':9} {'query':20} {'ticks':>12} {'rows':>9} {'seconds':>9} {'of which open':>13}")
        for row in reads:
            for name, f in row["filters"].items():
                span = f"{f['ticks'][0]}..{f['ticks'][1]}" if f["ticks"] else f"all {row['ticks']}"
                print(f"{row['level']:9} {name:20} {span:>12} {f['rows']:9,d} {f['s']:9.3f} {f['open_s']:13.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["loadavg_end"] = os.getloadavg()
    results["seconds"] = time.perf_counter() - began
    print(f"\n{results['seconds']:.0f} s in all; load average at the end {results['loadavg_end'][0]:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=float))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
