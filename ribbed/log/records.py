"""What each record of a run's log holds (docs/log-format.md, "Records"), built from a model.

The bodies are built by the same functions when a run writes its log and when a replay
re-computes it, so that a replay on the same executor and device gives the same bytes.  A tick's
body is assembled from references taken right after the tick and converted to arrays later (on
the writer's thread): the executors replace, never overwrite, the tensors a tick produced.
"""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from ribbed.log.format import FORMAT, VERSION, pack_spikes
from ribbed.log.lineage import generation_fields
from ribbed.scheduler.message_counts import dfa_targets
from ribbed.resources import available_cores
from ribbed.scenarios.timing import SPIKING_ENCODINGS
from ribbed.scheduler.messages import Kind, Stage
from ribbed.versions import package_versions

if TYPE_CHECKING:
    from ribbed.model import NetworkModel

__all__ = ["LEVELS", "header_body", "restore_snapshot", "snapshot_body", "tick_body", "tick_fields",
           "time_layout", "topology_body"]

#: Log levels, each recording everything the one before it does.
LEVELS = ("off", "summary", "activity", "messages")


def header_body(model: NetworkModel, level: str, threads: dict, cores: int | None = None,
                writer: str | None = None, chain: dict | None = None) -> dict:
    """The header: format, the resolved scenario, seed, settings and versions, and the layout of
    neurons and synapses a reader needs to name agents.  ``threads`` are torch's settings
    (:func:`ribbed.determinism.configure_torch`), ``cores`` the cores the run could use
    (default: :func:`ribbed.resources.available_cores`) and ``writer`` the log writer's kind
    (``process`` or ``thread``; :mod:`ribbed.log.run_log` fills it in when it starts one).
    ``chain``: a keyed log's ``{"kind", "key_id"}`` (:meth:`ribbed.log.chain.DigestChain.header_field`),
    the header's last field; a plain log's header has none."""
    scenario, network, executor = model.scenario, model.network, model.executor
    header = {
        "tick": -1, "format": FORMAT, "version": VERSION, "level": level,
        "scenario": scenario.model_dump(mode="json"),
        "scenario_folder": str(scenario.folder) if scenario.folder is not None else None,
        "seed": scenario.seed, "seed_entropy": str(np.random.SeedSequence(scenario.seed).entropy),
        "executor": executor.name, "device": executor.device_name, "dtype": executor.dtype_name,
        "threads": threads,
        "resources": {"cores": available_cores() if cores is None else cores, "writer": writer},
        "versions": package_versions(), "platform": platform.platform(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "batch_size": scenario.run.batch_size, "ticks": scenario.run.ticks,
        "kinds": [kind.name.lower() for kind in Kind], "stages": [stage.name.lower() for stage in Stage],
        "n_neurons": network.n_neurons,
        "populations": [{"name": p.name, "start": p.start, "size": p.size, "role": p.role}
                        for p in network.populations.values()],
        "projections": [{"name": p.name, "pre": p.pre.name, "post": p.post.name, "synapses": p.n_synapses,
                         "sends_error": p.sends_error, "feedback": p.feedback is not None, "delayed": p.delayed}
                        for p in network.projections],
        "broadcast": ([int(i) for i in (dfa_targets(network) if scenario.timed else network.broadcast_targets)]
                      if network.output.needs_credit else []),
    }
    time = time_layout(model)
    if time is not None:
        header["time"] = time
    if chain is not None:
        header["chain"] = chain
    return header


def time_layout(model: NetworkModel) -> dict | None:
    """A timed run's steps per sample and the populations that emit spikes (a spiking policy, or
    the input of a spiking encoding), in the network's order: what a tick record's per-step
    activity holds (docs/log-format.md); None for an untimed run."""
    scenario = model.scenario
    if not scenario.timed:
        return None
    spiking = {p.name for p in scenario.populations if scenario.population_firing(p).spiking}
    if scenario.encoding.kind in SPIKING_ENCODINGS:  # (a sequence's inputs are currents, not spikes)
        spiking.add(model.network.input.name)
    return {"steps": scenario.run.steps_per_sample,
            "spiking": [name for name in model.network.populations if name in spiking]}


def topology_body(model: NetworkModel, version: int = VERSION) -> dict:
    """Every projection's synapses (population-local pre and post indices, canonical order) and
    fixed feedback weights B, and (from format version 2) every direct-feedback-alignment
    population's fixed matrix D: what turns per-neuron values into messages, and what a
    neuron makes of the error it receives.  ``version``: the body as that format version
    wrote it (a replay checks a version-1 log's topology against the version-1 body)."""
    executor = model.executor
    dtype = np.dtype(executor.dtype_name)
    projections = []
    for p in model.network.projections:
        index = np.int32 if max(p.pre.size, p.post.size) < 2**31 else np.int64
        projections.append({"pre": p.pre_idx.astype(index), "post": p.post_idx.astype(index),
                            "feedback": None if p.feedback is None else executor.read("feedback", p.name).astype(dtype)})
    body = {"tick": -1, "projections": projections}
    if version >= 2:
        matrices = {name: executor.read("dfa", name) for name in model.network.populations}
        body["dfa"] = {name: d.astype(dtype) for name, d in matrices.items() if d is not None}
    return body


def _array(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def tick_fields(model: NetworkModel, level: str, result, index: np.ndarray, backward: bool, counts: np.ndarray,
                weights: dict | None) -> dict:
    """What the tick just run puts in its record, in body order, as references (tensors,
    per-population parts) taken now and converted later (see the module docstring); ``loss``
    and ``outputs`` are the tick's result."""
    fields = {"tick": model.tick - 1, "backward": backward, "loss": result, "counts": counts,
              "batch": np.asarray(index, dtype=np.int64), "outputs": result}
    values = model.executor.tick_values(activity=level in ("activity", "messages"), messages=level == "messages")
    sizes = [p.size for p in model.network.populations.values()]
    if "activation" in values:
        fields["activation"] = values["activation"]
    if "step_activity" in values:
        spiking = set(time_layout(model)["spiking"])
        steps = values["step_activity"]  # (in the network's order, as the header lists the populations)
        fields["step_activity"] = {name: (steps[name], name in spiking) for name in model.network.populations}
    if "delta" in values:
        fields["answer"] = values["answer"]
        # A population without credit is written as NaN columns: its part is its width.
        fields["delta"] = [size if part is None else part for part, size in zip(values["delta"], sizes)]
        if "step_delta" in values:
            fields["step_delta"] = ([size if part is None else part for part, size in zip(values["step_delta"], sizes)],
                                    model.scenario.run.steps_per_sample)
        fields["weights"] = weights
    generations = generation_fields(model, model.tick - 1)
    if generations is not None:  # (copies: the genomes change at the next generation)
        fields["generations"] = generations
    return fields


def tick_body(fields: dict) -> dict:
    """A tick record's body from :func:`tick_fields`: arrays, the per-population parts side by
    side (NaN for a population without values)."""
    result = fields["loss"]
    outputs = result.outputs
    body = {"tick": fields["tick"], "backward": fields["backward"], "loss": float(result.loss),
            "counts": fields["counts"], "batch": fields["batch"], "outputs": outputs}
    for name in ("activation", "step_activity", "answer", "delta", "step_delta", "weights", "generations"):
        if name not in fields:
            continue
        value = fields[name]
        if name == "step_activity":
            body[name] = {population: pack_spikes(_array(part)) if spiking else _array(part)
                          for population, (part, spiking) in value.items()}
        elif name == "step_delta":
            body[name] = _step_columns(value, outputs)
        else:
            body[name] = _columns(value, outputs) if isinstance(value, list) else (
                value if name in ("weights", "generations") else _array(value))
    return body


def _step_columns(value: tuple[list, int], outputs) -> np.ndarray:
    """Per-population (batch, steps, size) parts side by side along the neurons; a part given as
    its width (a population without credit) is NaN."""
    parts, steps = value
    outputs = _array(outputs)
    arrays = [part if isinstance(part, int) else _array(part) for part in parts]
    return np.concatenate([np.full((outputs.shape[0], steps, part), np.nan, dtype=outputs.dtype)
                           if isinstance(part, int) else part for part in arrays], axis=2)


def _columns(parts: list, outputs: np.ndarray) -> np.ndarray:
    """Per-population (batch, size) parts side by side; a part given as its width (a population
    without values) is NaN."""
    if all(isinstance(part, torch.Tensor) for part in parts):
        return _array(torch.cat(parts, dim=1))
    return np.concatenate([np.full((outputs.shape[0], part), np.nan, dtype=outputs.dtype) if isinstance(part, int)
                           else _array(part) for part in parts], axis=1)


def weights_before_tick(model: NetworkModel) -> dict:
    """The weights the coming tick's error messages are made with (projections that send error
    back along their own weights), for the ``messages`` level."""
    return {p.name: model.executor.read("weights", p.name).astype(np.dtype(model.executor.dtype_name))
            for p in model.network.projections if p.sends_error and p.feedback is None}


def snapshot_body(model: NetworkModel) -> dict:
    """Everything the run needs to continue from this tick (taken now, as copies)."""
    executor = model.executor
    state, kinds = executor.state()
    return {
        "tick": model.tick,
        "counts": executor.message_counts,
        "weights": {p.name: executor.read("weights", p.name) for p in model.network.projections},
        "biases": {name: executor.read("bias", name) for name, p in model.network.populations.items()},
        "state": state, "kinds": kinds,
        "rng": {"numpy": json.dumps(model.rng.bit_generator.state), "random": json.dumps(model.random.getstate())},
        "counts_at_record": model.counts_at_record,
        "metrics": {key: (float(value) if isinstance(value, (float, np.floating)) else value)
                    for key, value in model.last_metrics.items()},
    }


def restore_snapshot(model: NetworkModel, body: dict, decode: Callable[[object], np.ndarray]) -> None:
    """Put a snapshot's state into a freshly built model of the same scenario."""
    executor = model.executor
    for p in model.network.projections:
        executor.write("weights", p.name, np.array(decode(body["weights"][p.name])))
    for name, p in model.network.populations.items():
        executor.write("bias", name, np.array(decode(body["biases"][name])))
    state = {key: None if value is None else np.array(decode(value)) for key, value in body["state"].items()}
    executor.load_state(state, body["kinds"])
    model.rng.bit_generator.state = json.loads(body["rng"]["numpy"])
    version, internal, gauss = json.loads(body["rng"]["random"])
    model.random.setstate((version, tuple(internal), gauss))
    model.tick = int(body["tick"])
    model.counts_at_record = np.array(decode(body["counts_at_record"]))
    model.last_metrics = dict(body["metrics"])
