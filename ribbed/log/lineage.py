"""Generation events in the log: the candidates every generation of evolving guides created
(docs/log-format.md, "tick", field ``generations``; docs/semantics.md, "Evolving guides").

The genomes a generation draws are a function of the run's seed and its fitness history, so a
replay re-computes them; logging them in the tick record of the generation's tick lets
``replay --verify`` compare the lineage bit for bit, and lets a reader follow it back without
re-running anything.  One module for the three sides of the field: what a run writes
(:func:`generation_fields`), what a reader accepts (:func:`check_generations`) and what it
gives back (:func:`decode_generations`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ribbed.log.format import FormatViolation, array_problem, pack_spikes, unpack_spikes

if TYPE_CHECKING:
    from ribbed.model import NetworkModel

__all__ = ["GENERATION_ARRAYS", "check_generations", "decode_generations", "evolving_populations",
           "generation_fields", "generations_at"]

#: The arrays of one population's generation event, in body order, with their dtypes: one entry
#: per candidate born (guide, then slot order); ``masks`` packed 8 features a byte.
GENERATION_ARRAYS = {"guides": "<i8", "slots": "<i8", "ids": "<i8", "parents": "<i8", "kinds": "<i8",
                     "lrs": "<f8", "masks": "|u1"}
_ENTRY_FIELDS = {"generation", "features", *GENERATION_ARRAYS}


def evolving_populations(scenario: dict) -> dict[str, dict]:
    """The populations whose guides evolve, by name, in declaration order: their ``evolution``
    section, from a scenario's JSON form (the log header's ``scenario``)."""
    found = {}
    for population in scenario.get("populations") or []:
        guide = population.get("guide") if isinstance(population, dict) else None
        evolution = guide.get("evolution") if isinstance(guide, dict) else None
        every = evolution.get("generation_every") if isinstance(evolution, dict) else None
        if type(every) is int and every >= 1:
            found[population.get("name")] = evolution
    return found


def generations_at(evolving: dict[str, dict], tick: int) -> list[str]:
    """The populations a generation of which ends with tick ``tick``'s guide stage."""
    return [name for name, evolution in evolving.items() if (tick + 1) % evolution["generation_every"] == 0]


def generation_fields(model: NetworkModel, tick: int) -> dict | None:
    """The ``generations`` field of tick ``tick``'s record (taken right after the tick, as
    copies), or None when no generation ended with it."""
    evolving = {name: {"generation_every": g.evolution.generation_every}
                for name, g in model.network.guided.items() if g.evolution is not None}
    names = generations_at(evolving, tick)
    if not names:
        return None
    field = {}
    for name in names:
        genomes = model.executor.read("genomes", name)
        born = genomes["born"] == genomes["generation"]
        guides, slots = np.nonzero(born)
        field[name] = {"generation": int(genomes["generation"]), "features": int(genomes["mask"].shape[-1]),
                       "guides": guides.astype(np.int64), "slots": slots.astype(np.int64),
                       "ids": genomes["id"][born].astype(np.int64), "parents": genomes["parent"][born].astype(np.int64),
                       "kinds": genomes["kind"][born].astype(np.int64), "lrs": genomes["lr"][born].astype(np.float64),
                       "masks": pack_spikes(genomes["mask"][born])}
    return field


def _fail(where: str, message: str) -> FormatViolation:
    return FormatViolation(f"field '{where}': {message}")


def check_generations(value: Any, expected: list[str]) -> None:
    """A tick record's ``generations``: exactly the populations ``expected``, each with exactly
    its fields, arrays of their dtypes, one entry per candidate born, masks of ⌈features/8⌉
    bytes."""
    if type(value) is not dict:
        raise _fail("generations", "must be a map")
    if list(value) != expected:
        raise _fail("generations", f"must name the populations whose generation ends at this tick, {expected}, "
                    f"got {sorted(map(str, value))}")
    for name, entry in value.items():
        where = f"generations/{name}"
        if type(entry) is not dict or entry.keys() != _ENTRY_FIELDS:
            raise _fail(where, f"must be a map of exactly {sorted(_ENTRY_FIELDS)}")
        for key in ("generation", "features"):
            if type(entry[key]) is not int or entry[key] < 1:
                raise _fail(f"{where}/{key}", f"must be an integer of at least 1, got {entry[key]!r}")
        n = None
        for key, dtype in GENERATION_ARRAYS.items():
            array = entry[key]
            problem = array_problem(array)
            if problem is not None:
                raise _fail(f"{where}/{key}", problem)
            shape = array["shape"]
            if array["dtype"] != dtype or not shape:
                raise _fail(f"{where}/{key}", f"must be an array of dtype {dtype}, one row per candidate born")
            n = shape[0] if n is None else n
            width = [-(-entry["features"] // 8)] if key == "masks" else []
            if shape != [n, *width]:
                raise _fail(f"{where}/{key}", f"must be of shape {[n, *width]}, got {shape}")


def decode_generations(value: dict, decode: Callable[[Any], np.ndarray]) -> dict[str, dict]:
    """A record's ``generations`` as numpy: per population, its generation number, and per
    candidate born its guide, slot, id, parent id, kind index, lr and mask (bool, (n, features))."""
    decoded = {}
    for name, entry in value.items():
        arrays = {key: np.array(decode(entry[key])) for key in GENERATION_ARRAYS}
        arrays["masks"] = unpack_spikes(arrays["masks"], entry["features"], dtype=bool)
        decoded[name] = {"generation": entry["generation"], **arrays}
    return decoded
