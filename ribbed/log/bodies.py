"""What each record's body must hold (docs/log-format.md, "Records"), checked before a reader
uses it.

A record that passes its CRC and digest chain can still be one a forger re-chained, or one a
buggy writer wrote: its fields are checked against the page, and every array against the size
the header declares for it (the batch size, the neuron and synapse counts).  The header's own
fields are checked for their types and for agreeing with each other (population ids
contiguous, projections between populations that exist); sizes are plain integers there, and
nothing is ever allocated from them: a reader allocates only for arrays that are in the file,
after they matched the header.  So a header that declares 4e8 input neurons costs nothing,
and a record whose arrays do not have the declared shape is refused with the field named.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ribbed.log.format import FORMAT, ITEMSIZE, FormatViolation, array_problem, decode_array
from ribbed.log.lineage import check_generations, evolving_populations, generations_at
from ribbed.scheduler.messages import Kind, Stage

__all__ = ["LEVELS", "BodyRules", "check_header", "order_problem"]

#: The levels a log can be written at (``off`` writes none).
LEVELS = ("summary", "activity", "messages")
#: Message kind and stage names by code, as a header lists them.
KINDS = [kind.name.lower() for kind in Kind]
STAGES = [stage.name.lower() for stage in Stage]
ROLES = ("input", "hidden", "output")
#: The kinds of value a snapshot's ``state`` entry can have been (scheduler/state.py).
STATE_KINDS = frozenset({"tensor", "array", "int", "float", "numpy_float", "bool", "none"})
END_STATUSES = ("completed", "interrupted", "failed")
#: The most threads a header may ask torch for (a replay sets them).
MAX_THREADS = 4096

_HEADER_FIELDS = ("type", "tick", "format", "version", "level", "scenario", "scenario_folder", "seed", "seed_entropy",
                  "executor", "device", "dtype", "threads", "versions", "platform", "created", "batch_size", "ticks",
                  "kinds", "stages", "n_neurons", "populations", "projections", "broadcast")
_POPULATION_FIELDS = {"name", "start", "size", "role"}
_PROJECTION_FIELDS = {"name", "pre", "post", "synapses", "sends_error", "feedback", "delayed"}
_SNAPSHOT_FIELDS = {"type", "tick", "counts", "weights", "biases", "state", "kinds", "rng", "counts_at_record",
                    "metrics"}
_END_FIELDS = {"type", "tick", "status", "error"}
_INDEX_DTYPES = ("<i4", "<i8")


def _fail(field: str, message: str) -> FormatViolation:
    return FormatViolation(f"field '{field}': {message}")


def _is_int(value: Any) -> bool:
    return type(value) is int


def _keys(body: dict, expected: set, what: str) -> None:
    """``body`` has exactly the ``expected`` keys."""
    if body.keys() != expected:
        missing, extra = sorted(expected - body.keys()), sorted(map(str, body.keys() - expected))
        parts = ([f"lacks {', '.join(missing)}"] if missing else []) + (
            [f"has unknown {', '.join(extra)}"] if extra else [])
        raise FormatViolation(f"{what} {' and '.join(parts)}")


def _int(body: dict, field: str, low: int, high: int | None = None) -> int:
    value = body[field]
    if not _is_int(value) or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise _fail(field, f"must be an integer {bound}, got {_show(value)}")
    return value


def _str(body: dict, field: str, *, none: bool = False) -> None:
    value = body[field]
    if not (type(value) is str or (none and value is None)):
        raise _fail(field, f"must be a string{' or nil' if none else ''}, got {_show(value)}")


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"a {'map' if isinstance(value, dict) else 'list'} of {len(value)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _array(value: Any, field: str, dtypes: tuple[str, ...] | None = None, shape: list | None = None) -> None:
    """``value`` is an encoded array of one of ``dtypes`` and of ``shape`` (when given)."""
    if (shape is not None and dtypes is not None and len(dtypes) == 1 and type(value) is dict and len(value) == 3
            and value.get("dtype") == dtypes[0] and value.get("shape") == shape and type(value.get("data")) is bytes
            and len(value["data"]) == ITEMSIZE[dtypes[0]] * _product(shape)):
        return  # (the usual case, checked at once: every tick record has arrays of the same shapes)
    problem = array_problem(value)
    if problem is not None:
        raise _fail(field, problem)
    if dtypes is not None and value["dtype"] not in dtypes:
        raise _fail(field, f"must be an array of dtype {' or '.join(dtypes)}, got {value['dtype']}")
    if shape is not None and value["shape"] != shape:
        raise _fail(field, f"must be an array of shape {shape} (from the header), got {value['shape']}")


def _product(shape: list) -> int:
    count = 1
    for n in shape:
        count *= n
    return count


def check_header(body: dict) -> None:
    """The header's fields, their types, and their agreement with each other (a header's
    ``format`` and ``version`` are checked by the reader first); a FormatViolation naming the
    field otherwise."""
    version = body["version"]
    expected = set(_HEADER_FIELDS) | ({"resources"} if version >= 2 else set())
    _keys({k: v for k, v in body.items() if k not in ("chain", "time")}, expected, "the header")
    if body["format"] != FORMAT:
        raise _fail("format", f"must be {FORMAT!r}")
    if body["level"] not in LEVELS:
        raise _fail("level", f"must be one of {', '.join(LEVELS)}, got {_show(body['level'])}")
    scenario = body["scenario"]
    if type(scenario) is not dict or type(scenario.get("name")) is not str:
        raise _fail("scenario", "must be a scenario map with a name")
    _str(body, "scenario_folder", none=True)
    _int(body, "seed", 0)
    for field in ("seed_entropy", "executor", "device", "platform", "created"):
        _str(body, field)
    if body["dtype"] not in ("float32", "float64"):
        raise _fail("dtype", f"must be float32 or float64, got {_show(body['dtype'])}")
    threads = body["threads"]
    if type(threads) is not dict:
        raise _fail("threads", "must be a map")
    _keys(threads, {"torch_threads", "torch_interop_threads", "deterministic_algorithms"}, "the header's threads")
    _int(threads, "torch_threads", 1, MAX_THREADS)
    _int(threads, "torch_interop_threads", 1, MAX_THREADS)
    if type(threads["deterministic_algorithms"]) is not bool:
        raise _fail("threads.deterministic_algorithms", "must be true or false")
    if version >= 2:
        resources = body["resources"]
        if type(resources) is not dict:
            raise _fail("resources", "must be a map")
        _keys(resources, {"cores", "writer"}, "the header's resources")
        _int(resources, "cores", 1)
        _str(resources, "writer", none=True)
    versions = body["versions"]
    if type(versions) is not dict or not all(type(k) is str and type(v) is str for k, v in versions.items()):
        raise _fail("versions", "must be a map of strings to strings")
    _int(body, "batch_size", 1)
    _int(body, "ticks", 0)
    if body["kinds"] != KINDS:
        raise _fail("kinds", f"must list the message kinds by code: {KINDS}")
    if body["stages"] != STAGES:
        raise _fail("stages", f"must list the stages by code: {STAGES}")
    _check_layout(body)
    if "time" in body:
        _check_time(body)
    if "chain" in body:
        chain = body["chain"]
        if (type(chain) is not dict or chain.keys() != {"kind", "key_id"} or chain["kind"] != "hmac-sha256"
                or type(chain["key_id"]) is not str or len(chain["key_id"]) != 16
                or any(c not in "0123456789abcdef" for c in chain["key_id"])):
            raise _fail("chain", "must be a map {kind: hmac-sha256, key_id: 16 hex digits}")


def _check_time(body: dict) -> None:
    """A timed run's ``time``: its steps per sample and the populations that emit spikes (names
    of the header's populations, each once)."""
    time = body["time"]
    if type(time) is not dict:
        raise _fail("time", "must be a map")
    _keys(time, {"steps", "spiking"}, "the header's time")
    _int(time, "steps", 1)
    names = [p["name"] for p in body["populations"]]
    spiking = time["spiking"]
    if type(spiking) is not list or len(set(map(str, spiking))) != len(spiking) or not all(
            type(name) is str and name in names for name in spiking):
        raise _fail("time.spiking", "must be a list of the header's population names, each once")


def _check_layout(body: dict) -> None:
    """Populations with contiguous ids from 0 that add up to ``n_neurons``, one input and one
    output, projections between populations that exist, broadcast ids among the neurons."""
    n_neurons = _int(body, "n_neurons", 0)
    populations = body["populations"]
    if type(populations) is not list or not populations:
        raise _fail("populations", "must be a non-empty list")
    start, names = 0, set()
    for i, population in enumerate(populations):
        where = f"populations[{i}]"
        if type(population) is not dict:
            raise _fail(where, "must be a map")
        _keys(population, _POPULATION_FIELDS, f"the header's {where}")
        if type(population["name"]) is not str or population["name"] in names:
            raise _fail(f"{where}.name", "must be a string naming no other population, got "
                        + _show(population["name"]))
        names.add(population["name"])
        if population["start"] != start or not _is_int(population["start"]):
            raise _fail(f"{where}.start", f"must be {start} (populations hold contiguous ids from 0), got "
                        f"{_show(population['start'])}")
        start += _int(population, "size", 1)
        if population["role"] not in ROLES:
            raise _fail(f"{where}.role", f"must be one of {', '.join(ROLES)}, got {_show(population['role'])}")
    if start != n_neurons:
        raise _fail("n_neurons", f"is {n_neurons}, but the populations hold {start} neurons")
    for role in ("input", "output"):
        count = sum(p["role"] == role for p in populations)
        if count != 1:
            raise _fail("populations", f"must have exactly one {role} population, has {count}")
    projections = body["projections"]
    if type(projections) is not list:
        raise _fail("projections", "must be a list")
    seen = set()
    for i, projection in enumerate(projections):
        where = f"projections[{i}]"
        if type(projection) is not dict:
            raise _fail(where, "must be a map")
        _keys(projection, _PROJECTION_FIELDS, f"the header's {where}")
        if type(projection["name"]) is not str or projection["name"] in seen:
            raise _fail(f"{where}.name", "must be a string naming no other projection, got "
                        + _show(projection["name"]))
        seen.add(projection["name"])
        for end in ("pre", "post"):
            if projection[end] not in names:
                raise _fail(f"{where}.{end}", f"names no population of the header: {_show(projection[end])}")
        _int(projection, "synapses", 0)
        for flag in ("sends_error", "feedback", "delayed"):
            if type(projection[flag]) is not bool:
                raise _fail(f"{where}.{flag}", "must be true or false")
    broadcast = body["broadcast"]
    if type(broadcast) is not list or not all(_is_int(i) and 0 <= i < n_neurons for i in broadcast):
        raise _fail("broadcast", f"must be a list of agent ids from 0 to {n_neurons - 1}")


class BodyRules:
    """What the bodies of one log's records must hold, from its checked header (see the module
    docstring): :meth:`check` a body of any type."""

    def __init__(self, header: dict):
        self.version, self.level = header["version"], header["level"]
        self.float = "<f4" if header["dtype"] == "float32" else "<f8"
        batch, n_neurons = header["batch_size"], header["n_neurons"]
        self.populations = {p["name"]: p for p in header["populations"]}
        n_output = next(p["size"] for p in header["populations"] if p["role"] == "output")
        self.n_output = n_output
        self.projections = header["projections"]
        arrays = {"counts": ("<i8", [len(KINDS)]), "batch": ("<i8", [batch]),
                  "outputs": (self.float, [batch, n_output])}
        if self.level in ("activity", "messages"):
            arrays["activation"] = (self.float, [batch, n_neurons])
        if self.level == "messages":
            arrays["answer"] = (self.float, [batch, n_output])
            arrays["delta"] = (self.float, [batch, n_neurons])
        # A timed run (header "time"): per population what it emitted at every step, spikes as bits
        # (8 neurons a byte), and at level messages the deltas at every step.
        time = header.get("time")
        self.step_arrays: dict[str, tuple[str, list[int]]] = {}
        if time is not None and self.level in ("activity", "messages"):
            steps, spiking = time["steps"], set(time["spiking"])
            for p in header["populations"]:
                self.step_arrays[p["name"]] = (("|u1", [batch, steps, -(-p["size"] // 8)]) if p["name"] in spiking
                                               else (self.float, [batch, steps, p["size"]]))
            if self.level == "messages":
                arrays["step_delta"] = (self.float, [batch, steps, n_neurons])
        self.tick_arrays = arrays
        self.tick_fields = {"type", "tick", "backward", "loss", *arrays}
        if self.step_arrays:
            self.tick_fields.add("step_activity")
        if self.level == "messages":
            self.tick_fields.add("weights")
        #: The weights a tick record of level messages holds: projections that send error along their own weights.
        self.error_weights = {p["name"]: [p["synapses"]] for p in self.projections
                              if p["sends_error"] and not p["feedback"]}
        #: Populations whose guides evolve: a tick record that ends a generation of theirs has
        #: ``generations`` (at every level).
        scenario = header.get("scenario")
        self.evolving = evolving_populations(scenario) if isinstance(scenario, dict) else {}

    def check(self, kind: str, body: dict) -> None:
        """A FormatViolation naming the field when ``body`` (of a ``kind`` record) breaks the page."""
        if kind == "tick":
            self._tick(body)
        elif kind == "snapshot":
            self._snapshot(body)
        elif kind == "topology":
            self._topology(body)
        elif kind == "end":
            self._end(body)

    def _tick(self, body: dict) -> None:
        generations = generations_at(self.evolving, body["tick"]) if self.evolving and type(body.get("tick")) is int \
            else []
        _keys(body, self.tick_fields | ({"generations"} if generations else set()),
              f"a tick record at level {self.level}" + (" ending a generation" if generations else ""))
        if generations:
            check_generations(body["generations"], generations)
        if type(body["backward"]) is not bool:
            raise _fail("backward", f"must be true or false, got {_show(body['backward'])}")
        if type(body["loss"]) is not float:
            raise _fail("loss", f"must be a float, got {_show(body['loss'])}")
        for field, (dtype, shape) in self.tick_arrays.items():
            _array(body[field], field, (dtype,), shape)
        if self.step_arrays:
            activity = body["step_activity"]
            if type(activity) is not dict:
                raise _fail("step_activity", "must be a map")
            _keys(activity, self.step_arrays.keys(), "field 'step_activity'")
            for name, (dtype, shape) in self.step_arrays.items():
                _array(activity[name], f"step_activity/{name}", (dtype,), shape)
        _counts(body, "counts")
        if "weights" in body:
            self._weights(body["weights"], self.error_weights, (self.float,), "weights")

    def _weights(self, weights: Any, expected: dict[str, list], dtypes: tuple[str, ...], field: str) -> None:
        if type(weights) is not dict:
            raise _fail(field, "must be a map")
        _keys(weights, expected.keys(), f"field '{field}'")
        for name, shape in expected.items():
            _array(weights[name], f"{field}/{name}", dtypes, shape)

    def _topology(self, body: dict) -> None:
        _keys(body, {"type", "tick", "projections"} | ({"dfa"} if self.version >= 2 else set()), "the topology record")
        tables = body["projections"]
        if type(tables) is not list or len(tables) != len(self.projections):
            raise _fail("projections", f"must be a list of {len(self.projections)} (one per projection of the header)")
        for i, (spec, table) in enumerate(zip(self.projections, tables)):
            where = f"projections[{i}]"
            if type(table) is not dict:
                raise _fail(where, "must be a map")
            _keys(table, {"pre", "post", "feedback"}, f"field '{where}'")
            for end in ("pre", "post"):
                _array(table[end], f"{where}.{end}", _INDEX_DTYPES, [spec["synapses"]])
                indices = decode_array(table[end])
                size = self.populations[spec[end]]["size"]
                if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= size):
                    raise _fail(f"{where}.{end}", f"holds neuron indices outside population '{spec[end]}' "
                                f"(0 to {size - 1})")
            if spec["feedback"]:
                _array(table["feedback"], f"{where}.feedback", (self.float,), [spec["synapses"]])
            elif table["feedback"] is not None:
                raise _fail(f"{where}.feedback", "must be nil: the header's projection has no feedback weights")
        if "dfa" in body:
            matrices = body["dfa"]
            if type(matrices) is not dict:
                raise _fail("dfa", "must be a map")
            for name, matrix in matrices.items():
                if name not in self.populations:
                    raise _fail("dfa", f"names no population of the header: {_show(name)}")
                _array(matrix, f"dfa/{name}", (self.float,), [self.populations[name]["size"], self.n_output])

    def _snapshot(self, body: dict) -> None:
        _keys(body, _SNAPSHOT_FIELDS, "a snapshot record")
        for field in ("counts", "counts_at_record"):
            _array(body[field], field, ("<i8",), [len(KINDS)])
            _counts(body, field)
        self._weights(body["weights"], {p["name"]: [p["synapses"]] for p in self.projections}, ("<f8",), "weights")
        self._weights(body["biases"], {name: [p["size"]] for name, p in self.populations.items()}, ("<f8",), "biases")
        state, kinds = body["state"], body["kinds"]
        if type(state) is not dict or type(kinds) is not dict:
            raise _fail("state" if type(state) is not dict else "kinds", "must be a map")
        _keys(kinds, state.keys(), "field 'kinds'")
        for key, value in state.items():
            kind = kinds[key]
            if type(key) is not str or kind not in STATE_KINDS:
                raise _fail(f"kinds/{key}", f"must be one of {', '.join(sorted(STATE_KINDS))}, got {_show(kind)}")
            if (value is None) != (kind == "none"):
                raise _fail(f"state/{key}", "must be nil exactly when its kind is 'none'")
            if value is not None:
                _array(value, f"state/{key}")
        rng = body["rng"]
        if type(rng) is not dict:
            raise _fail("rng", "must be a map")
        _keys(rng, {"numpy", "random"}, "field 'rng'")
        for name in ("numpy", "random"):
            _str(rng, name)
        metrics = body["metrics"]
        if type(metrics) is not dict or not all(type(k) is str and (v is None or type(v) in (bool, int, float, str))
                                                for k, v in metrics.items()):
            raise _fail("metrics", "must be a map of names to numbers")

    def _end(self, body: dict) -> None:
        _keys(body, _END_FIELDS, "the end record")
        if body["status"] not in END_STATUSES:
            raise _fail("status", f"must be one of {', '.join(END_STATUSES)}, got {_show(body['status'])}")
        _str(body, "error", none=True)


def _counts(body: dict, field: str) -> None:
    if (np.frombuffer(body[field]["data"], dtype="<i8") < 0).any():
        raise _fail(field, "message counts cannot be negative")


def order_problem(records: list[tuple[str, int]], level: str) -> tuple[int, str] | None:
    """None when ``(type, tick)`` records come in the page's order (docs/log-format.md, "The
    stream of records"): the header; the topology right after it (levels activity and messages
    only); tick records 0, 1, 2, ...; a snapshot of tick T right after the tick record of T - 1;
    the end record last.  Else the position of the first record out of order, and why."""
    due = 0  # the next tick record's tick
    for i, (kind, tick) in enumerate(records):
        problem = None
        if i == 0:
            problem = None if kind == "header" else "the log does not start with its header"
        elif kind == "header":
            problem = "a second header record"
        elif kind == "topology":
            if i != 1 or level == "summary":
                problem = "a topology record comes only right after the header, at levels activity and messages"
        elif i == 1 and level != "summary":
            problem = f"at level {level} the record after the header is the topology record"
        elif kind == "tick":
            if tick != due:
                problem = f"tick record {tick} where tick {due} was due"
            due = tick + 1
        elif kind == "snapshot":
            if tick != due or due == 0 or records[i - 1][0] != "tick":
                before = records[i - 1]
                problem = f"a snapshot of tick {tick} right after the {before[0]} record of tick {before[1]}"
        elif kind == "end" and i != len(records) - 1:
            problem = "records after the end record"
        if problem is not None:
            return i, problem
    return None
