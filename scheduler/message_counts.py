"""How many messages a tick sends, by kind, computed from the network alone: the executors that
do not build messages one by one (batched, Ray) count these, and the tests check that the
reference executor, which does build them, sends exactly as many."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ribbed.environment.guidance import messages_of_guidance
from ribbed.scheduler.messages import Kind

if TYPE_CHECKING:
    from ribbed.environment.network import Network

__all__ = ["carries_over_steps", "dfa_targets", "messages_per_tick"]


def messages_per_tick(network: Network, backward: bool = True) -> np.ndarray:
    """The messages a tick of ``network`` sends, by kind (docs/semantics.md, "Messages per
    tick"), on a tick with (``backward``) or without propagated error: executors that do not
    build messages one by one count these."""
    counts = np.zeros(len(Kind), dtype=np.int64)
    counts[Kind.ACTIVATION] = network.input.size + network.n_synapses + network.output.size
    counts[Kind.ERROR] = network.output.size
    if backward:
        counts[Kind.ERROR] += sum(p.n_synapses for p in network.projections if p.sends_error)
        if network.output.needs_credit:
            counts[Kind.ERROR] += network.output.size * len(network.broadcast_targets)
    for kind, count in messages_of_guidance(network.guided, backward).items():
        counts[Kind[kind.upper()]] += count
    if not backward:  # broadcast credit: the task sends each neuron its context
        counts[Kind.TARGET] += sum(network.populations[name].size for name in network.broadcast_matrices)
    for name in network.sanger_layout:
        size = network.populations[name].size
        counts[Kind.FEEDBACK] += size * (size - 1) // 2
    return counts


def carries_over_steps(info) -> bool:
    """Whether a projection carries credit back in a tick with time in it (docs/semantics.md, "Time
    within a tick"): where it carries errors in the untimed tick, and, being delayed, with a gradient
    rule between populations that compute credit (then from each step to the step before), unless
    its presynaptic population is a DFA population (which takes its credit from the broadcast only)."""
    return bool(info.sends_error or (info.delayed and info.learning.rule in ("backprop", "feedback_alignment")
                                     and info.pre.needs_credit and info.post.needs_credit
                                     and info.pre.role != "input" and not info.pre.dfa_receiver))


def dfa_targets(network: Network) -> list[int]:
    """The neurons the output's delta reaches at every step of a timed tick: those of DFA
    populations that need credit and act below the output's level (the others could not use it
    within the step; docs/semantics.md, "Learning over the steps")."""
    level = network.output.level
    return [i for p in network.populations.values() if p.dfa_receiver and p.needs_credit and p.level < level
            for i in p.ids]
