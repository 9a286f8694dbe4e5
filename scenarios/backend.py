"""The backend section: which executor runs the tick, and the settings that executor reads.

A tagged union on ``kind``, as tasks are: each executor's spec holds only the keys it reads, so
the JSON Schema (``ribbed schema``) shows an editor which keys go with which executor, and a
key of another executor is refused, not silently ignored.

Two leniencies keep every scenario that loaded before loading the same way:

- ``kind`` may be left out (the reference executor) or written alone (``backend: batched``);
- a key of another executor is accepted, and dropped, when it holds that executor's default:
  scenarios dumped by earlier versions (a run's scenario.yaml, a log's header) state every key
  of every executor.  With any other value it is an error that names the executor it belongs to.

The rules that depend on the machine (a GPU that is there, Ray being installed) and the
cross-field rules are in :mod:`ribbed.scenarios.validation`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, get_args

from pydantic import BaseModel, BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from ribbed.scenarios.base import MAX_NEURONS, Strict, tagged_union

__all__ = ["BACKEND_KINDS", "BackendSpec", "BatchedBackendSpec", "RayBackendSpec", "ReferenceBackendSpec",
           "backend_fields"]

#: A device name as torch writes it (availability is checked by validation, not here).
Device = Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$")]
Dtype = Optional[Literal["float32", "float64"]]

#: The most threads a run or a shard may ask torch for (each is an operating-system thread).
MAX_THREADS = 1024
#: The most partitions (and so shards) of a Ray run: each is a block of every split population.
MAX_PARTITIONS = 2**20

_THREADS = ("torch's intra-op thread count for the run, at most 1024 (default: the cores this process may use, "
            "minus one for the log's writer process; 1 on a single core). Recorded in the message log: a replay uses the same "
            "count, so that sums come out bit for bit the same.")
_SPARSE = ("Projections with fewer than this share of all possible synapses are stored sparse (CSR); see "
           "projections[].storage.")


class ReferenceBackendSpec(Strict):
    """The reference executor: per-agent Mesa objects and explicit messages (the oracle), in
    float64 with numpy on the CPU."""

    kind: Literal["reference"] = Field(
        "reference", description="reference: per-agent Mesa objects and explicit messages (the oracle).",
    )
    device: Device = Field("auto", description="cpu, or auto (the same): the reference executor computes on the CPU.")
    dtype: Dtype = Field(None, description="float64 (the default) only: the reference executor computes in "
                         "float64, and float32 is refused.")
    threads: Optional[int] = Field(None, gt=0, le=MAX_THREADS, description=_THREADS)


class BatchedBackendSpec(Strict):
    """The batched executor: the same semantics as torch tensor operations, on the CPU or a GPU."""

    kind: Literal["batched"] = Field(..., description="batched: the same semantics as torch tensor operations.")
    device: Device = Field("auto", description="cpu, cuda, cuda:N, or auto (cuda when a GPU is present).")
    dtype: Dtype = Field(None, description="Float type; default: float32.")
    sparse_threshold: float = Field(0.3, ge=0.0, le=1.0, description=_SPARSE)
    threads: Optional[int] = Field(None, gt=0, le=MAX_THREADS, description=_THREADS)


class RayBackendSpec(Strict):
    """The Ray executor: neurons in virtual partitions, partitions in shards (Ray actors), each
    shard running the batched arithmetic on the CPU; results never depend on the shards."""

    kind: Literal["ray"] = Field(..., description="ray: the batched arithmetic in shards (Ray actors).")
    device: Device = Field("auto", description="cpu, or auto (the same): the shards compute on the CPU.")
    dtype: Dtype = Field(None, description="Float type; default: float32.")
    sparse_threshold: float = Field(0.3, ge=0.0, le=1.0, description=_SPARSE)
    shards: Optional[int] = Field(
        None, gt=0, le=MAX_PARTITIONS, description="Number of shards (Ray actors), each computing some of the partitions; default: "
        "as many as the machine (or cluster) has CPUs, at most the partitions. The result does not depend on it.",
    )
    partitions: int = Field(
        12, gt=0, le=MAX_PARTITIONS, description="Virtual partitions the neurons are assigned to, from the scenario alone (results "
        "depend on this number, never on the shards or nodes hosting the partitions); at least the number of "
        "shards.",
    )
    split_above: int = Field(
        4096, gt=0, le=MAX_NEURONS, description="A population with more neurons than this is split over all partitions; a "
        "smaller one stays whole in one partition.",
    )
    address: Optional[str] = Field(
        None, description="The Ray cluster to run on ('auto', or host:port, or ray://host:port); default: a Ray "
        "instance started for the run on this machine, and stopped after it.",
    )
    cpus_per_shard: float = Field(1.0, gt=0, description="The CPUs Ray reserves for each shard.")
    threads_per_shard: int = Field(1, gt=0, le=MAX_THREADS, description="torch's thread count in each shard.")
    placement: Literal["spread", "pack", "strict_spread", "strict_pack"] = Field(
        "spread", description="The strategy of the placement group that places the shards on nodes "
        "(strict_spread: one shard per node).",
    )
    shard_resources: Optional[list[dict[str, float]]] = Field(
        None, description="Per shard, custom Ray resources its bundle asks for (one dict per shard), to pin "
        "shards to nodes that offer them (node labels).",
    )
    timeout_s: float = Field(
        300.0, gt=0, description="The longest wait for any shard; a shard that takes longer stops the run with "
        "an error naming it.",
    )
    object_store_mb: Optional[int] = Field(
        None, ge=80, le=2**30, description="The object store's size when the run starts Ray itself (default: Ray's own "
        "choice).",
    )
    threads: Optional[int] = Field(None, gt=0, le=MAX_THREADS, description=_THREADS)

    @model_validator(mode="after")
    def _shards_fit(self) -> "RayBackendSpec":
        if self.shards is not None and self.shards > self.partitions:
            raise PydanticCustomError("scenario", f"{self.shards} shards need at least as many partitions "
                                      f"(there are {self.partitions})",
                                      {"fix": f"set 'partitions: {self.shards}' or more, or fewer shards"})
        if self.shard_resources is not None and self.shards is not None and len(self.shard_resources) != self.shards:
            raise PydanticCustomError("scenario", f"shard_resources has {len(self.shard_resources)} entries for "
                                      f"{self.shards} shards", {"fix": "give one dict of resources per shard"})
        return self


_MEMBERS: dict[str, type[BaseModel]] = {
    get_args(member.model_fields["kind"].annotation)[0]: member
    for member in (ReferenceBackendSpec, BatchedBackendSpec, RayBackendSpec)
}

#: The executors a scenario can name, in the order the schema lists them.
BACKEND_KINDS: tuple[str, ...] = tuple(_MEMBERS)


def backend_fields(kind: str) -> tuple[str, ...]:
    """The keys a backend of ``kind`` has (``kind`` included)."""
    return tuple(_MEMBERS[kind].model_fields)


def _owners(key: str) -> list[str]:
    return [kind for kind, member in _MEMBERS.items() if key in member.model_fields]


def _is_default(key: str, value: Any) -> bool:
    """Whether ``value`` is the default of ``key`` in every executor that has it."""
    return all(value == _MEMBERS[kind].model_fields[key].get_default(call_default_factory=True)
               for kind in _owners(key))


def _admit(value: Any) -> Any:
    """The leniencies of the module docstring, applied before the union picks its member."""
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, dict):
        return value  # a spec object, or something the union reports as not a mapping
    kind = value.get("kind", "reference")
    member = _MEMBERS.get(kind) if isinstance(kind, str) else None
    if member is None:
        return value  # an unknown kind: the union names the valid ones
    foreign = sorted(key for key in value if key not in member.model_fields and _owners(key))
    for key in foreign:
        if not _is_default(key, value[key]):
            owners = _owners(key)
            which = f"the {owners[0]} executor" if len(owners) == 1 else f"the {' and '.join(owners)} executors"
            raise PydanticCustomError("scenario", f"'{key}' applies to {which} only",
                                      {"fix": f"set 'kind: {owners[0]}', or remove '{key}'"})
    return {"kind": kind, **{key: item for key, item in value.items() if key not in foreign}}


#: The backend section: one of the specs above, chosen by ``kind``.
BackendSpec = Annotated[
    tagged_union("kind", ReferenceBackendSpec, BatchedBackendSpec, RayBackendSpec),
    BeforeValidator(_admit),
]
