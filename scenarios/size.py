"""How big a scenario's run is, estimated from the scenario alone, before anything is built.

``ribbed validate``, ``ribbed run``, ``ribbed replay`` and :class:`~ribbed.model.NetworkModel`
refuse a scenario that cannot fit in the memory this machine has to give (or the bound set by
``--max-memory``) *before* they build it: building is where the memory goes, and on a shared
machine a run that swaps or is killed by the kernel takes the others down with it.  So nothing
here builds a network, draws a synapse or runs a generator: every count comes from a formula
over the scenario's fields (networkx generators: :mod:`ribbed.scenarios.graphs`), in time and
memory that grow with the file, not with the network it describes.

**What is counted.**  The estimate is the peak resident memory of the run's processes, as the sum
of named parts, each with the field to change to shrink it:

- the Python runtime with numpy, torch, scikit-learn, pandas and Mesa, and the log's writer
  process (a constant, :data:`RUNTIME_BYTES`; Ray's shards each add one);
- per neuron: its agent object (a ``NeuronAgent`` on the reference executor, a view on the
  others) and its rows in the Mesa DataCollector at every evaluation;
- per neuron and sample of a tick's batch, and of the held-out set at evaluations: the state
  arrays (u, y, delta, credit, their temporaries);
- per synapse: the network's index and weight arrays (shared code, float64), the executor's copy
  (a dense matrix of n_pre x n_post cells, or one value per synapse), its optimizer state and
  fixed feedback weights, the per-sample products of a sparse projection's batch gradient, and
  the graph networkx builds for a generator rule (about :data:`GRAPH_EDGE_BYTES` an edge);
- the task's data (its loading copies included), the guides' tables (replay buffers, least
  squares statistics, MLP parameters), and the message log's ring and snapshot copies.

The per-unit costs were measured (peak RSS) on CPU runs of this version with torch 2.13: for the
built-in scenarios, and batched and reference networks of 10^4 to 4x10^5 neurons and up to 10^7
synapses, the estimate was 0.9 to 1.35 times the measured peak (tests/test_sizes.py checks a few
against a real run).  It is an estimate: the Ray object store and the operating system's caches
are not counted, and a generator without a formula is bounded by all pairs of its nodes.  With
``backend.device: cuda`` the executor's tensors are counted apart, as GPU memory
(``device_bytes``, not bounded here: torch's out-of-memory error is reported cleanly); with
``auto`` they are counted on the host, which overstates a GPU run's host memory.
"""

from __future__ import annotations

import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ribbed.errors import Problem
from ribbed.scenarios.graphs import bound_arguments, graph_shape
from ribbed.scenarios.guidance import TreeGuideSpec

if TYPE_CHECKING:
    from ribbed.scenarios.schema import PopulationSpec, ProjectionSpec, Scenario

__all__ = ["DENSE_LIMIT", "GRAPH_EDGE_BYTES", "RECORD_LIMIT", "RUNTIME_BYTES", "Part", "ProjectionSize",
           "SizeEstimate", "estimate_size", "format_bytes", "parse_size", "projection_size", "size_problems",
           "storage_layout"]

MIB = 2**20

#: The interpreter with numpy, torch, scikit-learn, pandas and Mesa imported (400 MiB measured),
#: and the message log's writer process (30 MiB).
RUNTIME_BYTES = 430 * MIB
#: A Ray shard's own process (the same libraries, without pandas and Mesa).
SHARD_PROCESS_BYTES = 400 * MIB
#: Per neuron: its agent (a NeuronAgent with its inbox and per-projection synapse blocks on the
#: reference executor; a NeuronView registered with Mesa on the others).
NEURON_OBJECT_BYTES = {"reference": 4600, "arrays": 1100}
#: Per neuron and evaluation: its row in the DataCollector's agent records (kept for the run).
RECORD_BYTES = 450
#: Per neuron, the evaluation's per-agent rows being written to agents.csv.
AGENT_ROW_BYTES = 350
#: Per neuron and sample of the batch: the tick's state (u, y, delta, credit and temporaries),
#: in bytes of the executor's float type (reference: float64 arrays and message payloads).
STATE_FLOATS_PER_SAMPLE = {"reference": 2.0, "arrays": 6.25}
#: Per synapse, the network's arrays (pre and post indices, weights; float64), and its feedback weights.
NETWORK_SYNAPSE_BYTES = 24
#: Per synapse on the reference executor: its weight in its neuron's block, the presynaptic ids as
#: Python lists (the block's and the sender's), and the messages of a tick.
REFERENCE_SYNAPSE_BYTES = 330
#: Per synapse and sample on the reference executor: its input column and the error it sends back.
REFERENCE_SYNAPSE_SAMPLE_BYTES = 16
#: Per edge of a graph networkx builds (adjacency dicts, the relabelled copy, the edge list).
GRAPH_EDGE_BYTES = 500
#: Above this many n_pre x n_post cells the batched executor stores a projection sparse unless
#: its ``storage`` says dense (:func:`storage_layout`, which the executor calls).
DENSE_LIMIT = 2**26
#: The largest body a message-log record can have (msgpack's bin 32; docs/log-format.md).
RECORD_LIMIT = 2**32 - 1
#: Held-out samples the batched executor evaluates at once, in neuron activations.
EVALUATION_CHUNK = 2**24
#: Slots of the shared ring between a run and its log writer (at least four tick records).
RING_SLOTS = 4

_OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "adam": 2}
_TASK_SHAPES = {"digits": (1797, 64, 10)}  # samples, inputs, outputs of the fixed data sets
_SYNTHETIC_SHAPES = {"moons": (2, 2), "xor": (2, 2), "sine": (1, 1)}


# --------------------------------------------------------------------------- sizes in text


_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes from ``8G``, ``512M``, ``1.5GiB``, ``100000`` (K, M, G, T, P are powers of 1024);
    ValueError when it is not a positive size."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a size")
    if isinstance(text, int):
        value = text
    else:
        match = _SIZE.match(str(text))
        if match is None:
            raise ValueError(f"'{text}' is not a size")
        value = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if value <= 0:
        raise ValueError(f"'{text}' is not a positive size")
    return value


def format_bytes(count: int | float) -> str:
    """``1536`` -> ``'1.5 KiB'``: binary units, three significant digits."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            break
        value /= 1024
    return f"{int(count)} B" if unit == "B" else f"{value:.3g} {unit}"


# --------------------------------------------------------------------------- the estimate


@dataclass(frozen=True)
class ProjectionSize:
    """One projection's synapses from its rule: ``exact`` when the build makes exactly that many
    (all_to_all, one_to_one, fixed_in_degree, edges, most generators), otherwise an expectation
    (fixed_probability) or a bound (a generator without a formula); ``graph_edges``: the edges
    networkx holds while building a generator's graph."""

    index: int
    label: str
    synapses: int
    exact: bool
    layout: str = "sparse"
    graph_edges: int = 0
    #: False for a generator without a size formula (its count is the all-pairs bound).
    known: bool = True


@dataclass(frozen=True)
class Part:
    """One part of the estimate: what it is, the field that sizes it, its bytes, and how to shrink it."""

    what: str
    path: str
    bytes: int
    fix: str = ""


@dataclass(frozen=True)
class SizeEstimate:
    """Neurons, synapses and peak bytes of a scenario's run (see the module docstring)."""

    neurons: int
    synapses: int
    exact: bool
    projections: tuple[ProjectionSize, ...]
    parts: tuple[Part, ...]
    #: The largest body of a message-log record (tick, snapshot or topology; 0 without a log), and
    #: the field that sizes it most.
    largest_record: int = 0
    record_kind: str = ""
    record_path: str = ""
    #: The executor's tensors on a GPU (``backend.device: cuda``): not in ``bytes``, not bounded here.
    device_bytes: int = 0

    @property
    def bytes(self) -> int:
        return sum(part.bytes for part in self.parts)

    def largest(self) -> Part:
        """The biggest part that a field of the scenario sizes (the one to shrink first)."""
        return max((part for part in self.parts if part.path), key=lambda part: part.bytes,
                   default=self.parts[0])

    def describe(self) -> str:
        synapses = f"{self.synapses:,}" + ("" if self.exact else " (expected)")
        gpu = f" (and about {format_bytes(self.device_bytes)} on the GPU)" if self.device_bytes else ""
        return f"{self.neurons:,} neurons, {synapses} synapses, about {format_bytes(self.bytes)} at its peak{gpu}"


def storage_layout(storage: str, threshold: float, n_pre: int, n_post: int, synapses: int) -> str:
    """``dense`` or ``sparse``: how the batched executor holds a projection's weights (its
    ``storage``, or for ``auto`` sparse above :data:`DENSE_LIMIT` cells or below ``threshold``
    of all pairs).  The one home of the rule: the executor and the estimate both call it."""
    if storage != "auto":
        return storage
    cells = n_pre * n_post
    if cells > DENSE_LIMIT:
        return "sparse"
    return "sparse" if synapses / cells < threshold else "dense"


def projection_size(index: int, projection: ProjectionSpec, n_pre: int, n_post: int,
                    threshold: float = 0.3) -> ProjectionSize:
    """The synapses of one projection from its connectivity rule, without drawing them.

    Raises :class:`~ribbed.scenarios.graphs.GeneratorCallError` for a generator that cannot be
    called with these sizes and params."""
    rule = projection.connectivity
    self_projection = projection.pre == projection.post
    no_self = self_projection and not getattr(rule, "allow_self_connections", True)
    edges, exact, known = 0, True, True
    if rule.rule == "all_to_all":
        synapses = n_pre * n_post - (n_pre if no_self else 0)
    elif rule.rule == "one_to_one":
        synapses = n_pre
    elif rule.rule == "fixed_probability":
        synapses = round(rule.p * (n_pre - (1 if no_self else 0)) * n_post)
        exact = rule.p == 1.0
    elif rule.rule == "fixed_in_degree":
        synapses = rule.k * n_post
    elif rule.rule == "edges":
        synapses = len(rule.edges)  # validation refuses a pair listed twice
    else:  # networkx
        sizes = (n_pre,) if self_projection else (n_pre, n_post)
        shape = graph_shape(rule.generator, sizes, bound_arguments(rule.generator, sizes, rule.params))
        synapses, exact, edges, known = shape.synapses, shape.exact, shape.edges, shape.known
    layout = storage_layout(projection.storage, threshold, n_pre, n_post, synapses) if n_pre * n_post else "sparse"
    return ProjectionSize(index, projection.label, synapses, exact, layout, edges, known)


def estimate_size(scenario: Scenario, cores: int | None = None) -> SizeEstimate:
    """The size of ``scenario``'s run (see the module docstring).  ``cores`` is the shard count a
    local Ray run defaults to (default: :func:`ribbed.resources.available_cores`).  The
    scenario must be consistent (validation's consistency rules hold)."""
    return _Estimator(scenario, cores).estimate()


class _Estimator:
    """The parts of one scenario's estimate, with the quantities they share."""

    def __init__(self, scenario: Scenario, cores: int | None):
        self.s = scenario
        backend = scenario.backend
        self.kind = "reference" if backend.kind == "reference" else "arrays"
        dtype = backend.dtype or ("float64" if backend.kind == "reference" else "float32")
        self.dtype = 8 if dtype == "float64" else 4
        self.batch = scenario.run.batch_size
        self.sizes = {p.name: p.size for p in scenario.populations}
        self.neurons = sum(self.sizes.values())
        self.n_out = next(p.size for p in scenario.populations if p.role == "output")
        self.n_in = next(p.size for p in scenario.populations if p.role == "input")
        run = scenario.run
        self.evaluations = run.ticks // run.eval_every + 1 + (1 if run.ticks % run.eval_every else 0)
        #: An explicit cuda device holds the executor's tensors: counted apart from the host's memory.
        self.gpu = backend.kind == "batched" and backend.device.startswith("cuda")
        self.device_bytes = 0
        threshold = getattr(backend, "sparse_threshold", 0.3)
        self.projections = [projection_size(i, p, self.sizes[p.pre], self.sizes[p.post], threshold)
                            for i, p in enumerate(scenario.projections)]
        self.samples, self.test_samples, self.data_bytes, self.data_path = self._data()
        self.cores = cores

    # ---------------------------------------------------------------- parts

    def estimate(self) -> SizeEstimate:
        s = self.s
        parts = [Part("the Python runtime and libraries, and the log's writer process", "", RUNTIME_BYTES)]
        parts += self._shards()
        parts += self._populations()
        parts.append(self._records())
        parts.append(self._batch())
        parts.append(self._evaluation())
        parts += [self._projection(size, spec) for size, spec in zip(self.projections, s.projections)]
        if self.data_bytes:
            parts.append(Part(f"the task's data ({self.samples:,} samples, with their loading copies)",
                              self.data_path, self.data_bytes, "use fewer samples"))
        parts += self._guides()
        record, kind, path, log = self._log()
        if log:
            parts.append(Part("the message log's ring of tick records and its snapshot copies", path, log,
                              "use a smaller run.batch_size or a lower log.level (log.level: off: no message log)"))
        synapses = sum(p.synapses for p in self.projections)
        exact = all(p.exact for p in self.projections)
        return SizeEstimate(self.neurons, synapses, exact, tuple(self.projections), tuple(parts), record, kind,
                            path, self.device_bytes)

    def _tensors(self, bytes_: float) -> int:
        """``bytes_`` of the executor's tensors: the host's, or on a GPU the device's (then 0 here)."""
        if self.gpu:
            self.device_bytes += int(bytes_)
            return 0
        return int(bytes_)

    def _scale(self) -> int:
        """The Ray executor holds the state twice: in the shards, and the driver's copy."""
        return 2 if self.s.backend.kind == "ray" else 1

    def _shards(self) -> list[Part]:
        backend = self.s.backend
        if backend.kind != "ray" or backend.address is not None:
            return []  # shards on a cluster's nodes use theirs
        shards = backend.shards
        if shards is None:
            if self.cores is None:
                from ribbed.resources import available_cores

                self.cores = available_cores()
            shards = min(self.cores, backend.partitions)
        return [Part(f"{shards} Ray shard processes", "backend.shards", shards * SHARD_PROCESS_BYTES,
                     "use fewer shards")]

    def _populations(self) -> list[Part]:
        per = NEURON_OBJECT_BYTES[self.kind]
        return [Part(f"population '{p.name}': {p.size:,} neuron agents", f"populations[{i}].size", p.size * per,
                     "use smaller populations") for i, p in enumerate(self.s.populations)]

    def _records(self) -> Part:
        """Every neuron's row in the DataCollector at every evaluation (kept for the run), and the
        rows of one evaluation on their way to agents.csv."""
        return Part(f"the metrics of {self.neurons:,} neurons at {self.evaluations:,} evaluations (run.ticks / "
                    "run.eval_every)", "run.eval_every",
                    self.neurons * (self.evaluations * RECORD_BYTES + AGENT_ROW_BYTES),
                    "evaluate less often (a larger run.eval_every) or run fewer run.ticks, or use smaller populations")

    def _state_per_sample(self) -> float:
        return STATE_FLOATS_PER_SAMPLE[self.kind] * (8 if self.kind == "reference" else self.dtype)

    def _batch(self) -> Part:
        # With time in the tick every step's values are kept for the backward pass (docs/semantics.md,
        # "Time within a tick"): T times the state of one step.
        steps = self.s.run.steps_per_sample
        bytes_ = self._tensors(self.neurons * self.batch * steps * self._state_per_sample() * self._scale())
        over = f" and {steps} steps" if steps > 1 else ""
        return Part(f"the tick's per-neuron values over a batch of {self.batch:,}{over}", "run.batch_size", bytes_,
                    "use a smaller run.batch_size" + (" or fewer run.steps_per_sample" if steps > 1 else ""))

    def _evaluation(self) -> Part:
        activations = self.test_samples * self.neurons
        # An evaluation with time in its tick runs the held-out set at once, over its steps.
        steps = self.s.run.steps_per_sample
        chunk = (activations * steps if self.kind == "reference" or self.s.timed
                 else min(activations, EVALUATION_CHUNK))
        bytes_ = activations * 8 + self._tensors(chunk * self._state_per_sample())
        return Part(f"evaluating {self.test_samples:,} held-out samples", self.data_path, int(bytes_),
                    "hold out fewer samples (task.test_fraction) or use fewer samples")

    def _projection(self, size: ProjectionSize, spec: ProjectionSpec) -> Part:
        learning = self.s.projection_learning(spec)
        states = 0 if spec.frozen else _OPTIMIZER_STATES[learning.optimizer]
        feedback = 1 if learning.rule == "feedback_alignment" else 0
        n_pre, n_post = self.sizes[spec.pre], self.sizes[spec.post]
        synapses = size.synapses
        bytes_ = synapses * (NETWORK_SYNAPSE_BYTES + 8 * feedback) + size.graph_edges * GRAPH_EDGE_BYTES
        what = f"projection '{size.label}': {synapses:,} synapses"
        fix = "use sparser connectivity or smaller populations"
        if self.kind == "reference":
            bytes_ += synapses * (REFERENCE_SYNAPSE_BYTES + 8 * (states + feedback)
                                  + REFERENCE_SYNAPSE_SAMPLE_BYTES * self.batch)
        elif size.layout == "dense":
            cells = n_pre * n_post
            matrices = 1 + (synapses < cells) + (0 if spec.frozen else 1) + states + feedback
            bytes_ += self._tensors(self._scale() * (synapses * 8 + cells * self.dtype * matrices))
            what += f", held as a dense {n_post:,} x {n_pre:,} matrix"
            if synapses < cells:
                fix = "store it sparse (storage: sparse), or use sparser connectivity or smaller populations"
        else:
            per_sample = 2 * self.dtype * self.batch if self.batch > 1 else 0
            bytes_ += self._tensors(self._scale() * synapses * (4 + self.dtype * (3 + states + feedback) + per_sample))
            fix += ", or a smaller run.batch_size"
        if size.graph_edges:
            what += f" (networkx builds {size.graph_edges:,} edges)"
        if not size.known:
            what += (f"; at most: ribbed has no size formula for {spec.connectivity.generator}, so every pair of its "
                     "nodes is counted")
            fix = ("use a generator whose size ribbed computes from its arguments (erdos_renyi_graph, "
                   "watts_strogatz_graph, barabasi_albert_graph...: ribbed.scenarios.graphs.known_generators()), "
                   "or smaller populations")
        return Part(what, f"projections[{size.index}].connectivity", int(bytes_), fix)

    def _guides(self) -> list[Part]:
        parts = []
        base = 3 + 2 * (2 * self.n_out + 1)  # environment.guidance.n_guide_features(n_context_columns(n_out))
        for i, population in enumerate(self.s.populations):
            guide = population.guide
            if guide is None:
                continue
            # Identity features (at most: 'weights' is narrower when the fan-out is below identity_dims).
            features = base + 4 * ("readout" in guide.identity) + guide.identity_dims * ("weights" in guide.identity)
            guides = self._guide_count(population)
            per_guide = 4096  # the guide object itself (a Mesa ClusterAgent, or its slot in a stack)
            if guide.kind in ("tree", "sklearn"):
                rows_per_tick = self.batch * math.ceil(population.size / guides)
                rows = min(guide.buffer, rows_per_tick * self.s.run.ticks)
                per_guide += 2 * rows * (features + 1) * 8  # the buffer, and the copy each append makes
            elif guide.kind == "linear":
                per_guide += 2 * (features * features + 2 * features) * self.dtype
            else:  # mlp: parameters, gradients, Adam's two moments
                per_guide += 4 * (features * guide.hidden + 2 * guide.hidden + 1) * self.dtype
            features_per_tick = 3 * self.batch * population.size * features * self.dtype
            evolution = getattr(guide, "evolution", None)
            if evolution is not None:
                # Every (guide, candidate) slot has a place in the stack of every kind; the masked rows
                # (and, for linear candidates, each row's X^T X) are made per candidate.
                k, hidden = evolution.candidates, getattr(guide, "hidden", 16)
                slot = sum(2 * (features * features + 2 * features) if kind == "linear"
                           else 4 * (features * hidden + 2 * hidden + 1) for kind in evolution.kinds if kind != "tree")
                per_guide = 4096 + k * slot * self.dtype
                if "tree" in evolution.kinds:  # a float32 buffer per guide, its copy at the last refit, the trees
                    tree = guide if guide.kind == "tree" else TreeGuideSpec(kind="tree")
                    rows = min(tree.buffer, self.batch * math.ceil(population.size / guides) * self.s.run.ticks)
                    per_guide += 2 * rows * (features + 1) * 4 + k * 2 ** (tree.max_depth + 1) * 80
                features_per_tick *= k
                if "linear" in evolution.kinds:
                    features_per_tick += population.size * k * (features + 1) ** 2 * self.dtype
            parts.append(Part(f"population '{population.name}': {guides:,} {guide.kind} guides",
                              f"populations[{i}].guide", guides * per_guide + features_per_tick,
                              "use smaller guides (a smaller buffer or hidden size), or a hash or tree coupling "
                              "(fewer guides)"))
        return parts

    def _guide_count(self, population: PopulationSpec) -> int:
        coupling = self.s.population_coupling(population)
        if coupling.kind == "hash":
            return 2**coupling.bits
        if coupling.kind == "tree":
            leaves = math.ceil(population.size / coupling.leaf_size)
            depth = 1 + math.ceil(math.log2(leaves)) if leaves > 1 else 1
            return 2**depth - 1
        return population.size

    def _log(self) -> tuple[int, str, str, int]:
        """(the largest record's body, its kind, the field that sizes it, the log's memory) for the
        scenario's log level: tick records (the batch's indices and outputs, and at higher levels
        every neuron's values), snapshots (every population's last activations over the batch,
        weights and optimizer state in float64) and the topology (every synapse's indices)."""
        level = self.s.log.level
        if level == "off":
            return 0, "", "", 0
        batch, dtype = self.batch, self.dtype
        tick = 64 + 8 * 16 + 8 * batch + batch * self.n_out * dtype
        if level in ("activity", "messages"):
            tick += batch * self.neurons * dtype
        if level == "messages":
            tick += batch * (self.neurons + self.n_out) * dtype
        per_sample = 8 * self.neurons * batch  # every population's y, (batch, size), in a snapshot
        snapshot, topology = per_sample + 32 * self.neurons, 0
        for size, spec in zip(self.projections, self.s.projections):
            learning = self.s.projection_learning(spec)
            states = 0 if spec.frozen else _OPTIMIZER_STATES[learning.optimizer]
            feedback = learning.rule == "feedback_alignment"
            index = 4 if max(self.sizes[spec.pre], self.sizes[spec.post]) < 2**31 else 8
            snapshot += size.synapses * 8 * (1 + states)
            topology += size.synapses * (2 * index + (dtype if feedback else 0))
            if level == "messages" and learning.rule == "backprop":
                tick += size.synapses * dtype  # the weights the error messages were made with
        largest, kind = max((tick, "tick"), (snapshot, "snapshot"), (topology, "topology"))
        by_batch = kind == "tick" or (kind == "snapshot" and 2 * per_sample > snapshot)
        path = "run.batch_size" if by_batch else "log.level"
        return largest, kind, path, RING_SLOTS * tick + 2 * max(snapshot, topology)

    # ---------------------------------------------------------------- the data

    def _data(self) -> tuple[int, int, int, str]:
        """(samples, held-out samples, bytes while loading, the field that sizes them)."""
        task = self.s.task
        if task.kind == "npz":
            stored = _npz_bytes(task.path, self.s.folder)
            rows = stored // max(1, 8 * (self.n_in + 1))  # float64 inputs and a label or target per row
            return rows, max(1, rows // 5), 4 * stored, "task.path"
        if task.kind in _TASK_SHAPES:
            samples, n_in, n_out = _TASK_SHAPES[task.kind]
            path = "task.test_fraction"
        elif task.kind == "mackey_glass":
            samples, (n_in, n_out), path = task.n_samples, (task.window, 1), "task.n_samples"
        elif task.kind == "delayed_recall":
            samples, n_in, n_out, path = (task.n_samples, (task.delay + 1) * task.n_symbols, task.n_symbols,
                                          "task.n_samples")
        elif task.kind == "constant":
            samples, n_in, n_out, path = task.n_samples, task.n_inputs, task.n_outputs, "task.n_samples"
        else:
            samples, (n_in, n_out), path = task.n_samples, _SYNTHETIC_SHAPES[task.kind], "task.n_samples"
        test = math.ceil(samples * task.test_fraction)
        # Drawn, split and scaled (about four copies at once), then kept with one-hot targets and
        # the executor's copy.
        return samples, test, 4 * samples * (n_in + n_out) * 8, path


def _npz_bytes(path: str, folder: Path | None) -> int:
    """The uncompressed size of an .npz file's arrays, from its zip directory (nothing is read);
    0 when it cannot be read (the task's loader says why)."""
    file = Path(path)
    if not file.is_absolute() and folder is not None:
        file = folder / file
    try:
        with zipfile.ZipFile(file) as archive:
            return sum(max(0, info.file_size) for info in archive.infolist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return 0


# --------------------------------------------------------------------------- refusals


def size_problems(scenario: Scenario, estimate: SizeEstimate, limit: int | None,
                  limit_source: str = "") -> list[Problem]:
    """What cannot work at this size: a run that needs more than ``limit`` bytes (None: no bound;
    ``limit_source`` says where the bound comes from), located at the field that sizes the
    estimate's largest part, and a message-log record larger than the format's 4 GiB (the run
    would fail when it writes it)."""
    problems = _record_problems(scenario.source, estimate)
    if limit is None or estimate.bytes <= limit:
        return problems
    total, bound, source = format_bytes(estimate.bytes), format_bytes(limit), limit_source or "allowed"
    part = estimate.largest()
    raise_it = "raise the bound with --max-memory SIZE (max_memory= from Python)"
    if part.bytes < RUNTIME_BYTES:  # the bound is below what any run needs
        memory = Problem(scenario.source, "", f"the run would need about {total} of memory, more than the {bound} "
                         f"{source}: the Python runtime and its libraries alone take about "
                         f"{format_bytes(RUNTIME_BYTES)}", f"free some memory, or {raise_it} to at least {total}")
    else:
        synapses = f"{estimate.synapses:,} synapses" + ("" if estimate.exact else " expected")
        memory = Problem(scenario.source, part.path,
                         f"the run would need about {total} of memory ({estimate.neurons:,} neurons, {synapses}), "
                         f"more than the {bound} {source}; the largest part is {part.what}: about "
                         f"{format_bytes(part.bytes)}",
                         f"{part.fix}; or, if this machine really has the memory, {raise_it}")
    return [memory, *problems]


def _record_problems(source: str, estimate: SizeEstimate) -> list[Problem]:
    """A message-log record larger than the format's 4 GiB: the run would fail when it writes it."""
    if estimate.largest_record <= RECORD_LIMIT:
        return []
    kind, where = estimate.record_kind, estimate.record_path
    shrink = {"tick": "use a smaller run.batch_size or a lower log.level",
              "snapshot": ("use smaller populations or a smaller run.batch_size" if where == "run.batch_size"
                           else "use fewer synapses"),
              "topology": "use fewer synapses"}[kind]
    return [Problem(source, where, f"the message log's {kind} records would hold about "
                    f"{format_bytes(estimate.largest_record)}, more than the 4 GiB a record can hold "
                    "(docs/log-format.md)", f"{shrink}, or set log.level: off (no message log)")]
