"""Where the Ray executor computes each neuron: neurons in virtual partitions, partitions in shards.

As in NEST, neurons are assigned to a fixed number of virtual partitions that depends only on
the scenario (``backend.partitions`` and ``backend.split_above``), and every computation is
done partition by partition, in partition order.  Shards (Ray actors) only host partitions, so a
result never depends on how many shards or nodes there are.

A partition holds blocks: contiguous ranges of one population's neurons.  A population larger
than ``split_above`` is cut into one block per partition, so that its work spreads evenly; a
smaller one stays whole in one partition (a densely connected group is not cut), placed on the
least loaded partition.  A population that learns by Sanger's rule always stays whole: its
lateral term couples all of its neurons.  The input population is not partitioned: every shard
reads the training data itself.  Partitions are then dealt to shards, heaviest first, each to the
least loaded shard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ribbed.environment.network import Network

__all__ = ["Block", "Partitioning", "partition_network"]


@dataclass(frozen=True)
class Block:
    """Neurons ``start:stop`` (population-local indices) of ``population``, in ``partition``."""

    population: str
    partition: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass
class Partitioning:
    """The blocks of every computed population (in neuron order) and the shard of each partition."""

    n_partitions: int
    blocks: dict[str, list[Block]]
    shard_of_partition: np.ndarray

    @property
    def n_shards(self) -> int:
        return int(self.shard_of_partition.max()) + 1 if len(self.shard_of_partition) else 0

    def shard_of(self, block: Block) -> int:
        return int(self.shard_of_partition[block.partition])

    def shard_blocks(self, shard: int) -> list[Block]:
        """The blocks a shard computes, population by population in network order."""
        return [b for blocks in self.blocks.values() for b in blocks if self.shard_of(b) == shard]

    def neuron_shards(self, network: Network, population: str) -> np.ndarray:
        """The shard of each neuron of ``population`` (-1 for the input, which every shard reads)."""
        shards = np.full(network.populations[population].size, -1, dtype=np.int64)
        for block in self.blocks.get(population, ()):
            shards[block.start:block.stop] = self.shard_of(block)
        return shards

    def report(self, network: Network) -> dict:
        """Neurons and incoming synapses per shard, and the cut: synapses whose two neurons are on
        different shards (their activation and error messages cross between shards every tick).
        Synapses from the input population are never cut: every shard reads the input."""
        n = self.n_shards
        neurons, synapses = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        for blocks in self.blocks.values():
            for block in blocks:
                neurons[self.shard_of(block)] += block.size
        cut = 0
        for projection in network.projections:
            post = self.neuron_shards(network, projection.post.name)[projection.post_idx]
            synapses += np.bincount(post, minlength=n)
            if projection.pre.role != "input":
                cut += int(np.count_nonzero(self.neuron_shards(network, projection.pre.name)[projection.pre_idx] != post))
        total = int(network.n_synapses)
        return {"partitions": self.n_partitions, "shards": n, "neurons_per_shard": neurons.tolist(),
                "synapses_per_shard": synapses.tolist(), "cut_synapses": cut, "synapses": total,
                "cut_fraction": cut / total if total else 0.0}


def partition_network(network: Network, n_partitions: int, split_above: int, n_shards: int) -> Partitioning:
    """Blocks and partitions from the scenario alone, then partitions dealt to ``n_shards`` shards
    (see the module docstring)."""
    if n_shards > n_partitions:
        raise ValueError(f"{n_shards} shards need at least as many partitions (there are {n_partitions})")
    incoming = {name: 0 for name in network.populations}
    for projection in network.projections:
        incoming[projection.post.name] += projection.n_synapses
    sanger = set(network.sanger_layout)
    load = np.zeros(n_partitions, dtype=np.float64)
    blocks: dict[str, list[Block]] = {}
    whole = []
    for name, info in network.populations.items():
        if info.role == "input":
            continue
        if info.size > split_above and name not in sanger:
            bounds = [info.size * p // n_partitions for p in range(n_partitions + 1)]
            blocks[name] = [Block(name, p, bounds[p], bounds[p + 1]) for p in range(n_partitions)
                            if bounds[p + 1] > bounds[p]]
            per_neuron = (info.size + incoming[name]) / info.size
            for block in blocks[name]:
                load[block.partition] += block.size * per_neuron
        else:
            whole.append(name)
    # Heaviest whole populations first, each to the least loaded partition (lowest index on ties).
    for name in sorted(whole, key=lambda n: -(network.populations[n].size + incoming[n])):
        partition = int(np.argmin(load))
        blocks[name] = [Block(name, partition, 0, network.populations[name].size)]
        load[partition] += network.populations[name].size + incoming[name]
    blocks = {name: blocks[name] for name in network.populations if name in blocks}  # network order
    shard_load = np.zeros(n_shards, dtype=np.float64)
    shard_of = np.zeros(n_partitions, dtype=np.int64)
    # Every shard gets at least one partition: the first n_shards go one each, heaviest first.
    order = sorted(range(n_partitions), key=lambda p: (-load[p], p))
    for rank, partition in enumerate(order):
        shard = rank if rank < n_shards else int(np.argmin(shard_load))
        shard_of[partition] = shard
        shard_load[shard] += load[partition]
    return Partitioning(n_partitions, blocks, shard_of)
