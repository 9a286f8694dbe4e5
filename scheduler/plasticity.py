"""STDP and R-STDP wired into a timed tick: the traces and eligibility of a group of synapses, one
step at a time, and the reward the task sends (docs/semantics.md, "STDP in a tick").

Why one module for both executors: the batched executor keeps one :class:`STDPSynapses` per
projection (torch, every synapse of it, canonical order), the reference executor one per neuron
and incoming projection (numpy, that neuron's synapses, with its own copy of its presynaptic
partners' traces, updated from the spike messages it receives: all it knows is local).  Both call
the same arithmetic, :mod:`ribbed.agents.stdp`'s, through the same class, so a step is computed
the same way whoever holds the synapses.  The per-synapse copy of a presynaptic trace equals the
presynaptic neuron's own trace: every copy sees the same spikes and decays by the same factor.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ribbed.agents.stdp import (RewardParams, STDPParams, STDPTraces, apply_update, decay_traces, eligibility_step,
                                increment_traces, initial_traces, pair_update)
from ribbed.seeding import component_uniforms

__all__ = ["STDPSynapses", "carried_values", "projection_stdp", "reward_permutation", "stdp_params",
           "task_reward"]


def stdp_params(learning: Any) -> tuple[STDPParams, RewardParams | None]:
    """The :mod:`ribbed.agents.stdp` parameters of a resolved learning section (rule stdp or
    r_stdp): STDP's, and R-STDP's (eligibility time constant, ``learning.lr``) or None."""
    spec = learning.stdp
    params = STDPParams(tau_plus=spec.tau_plus, tau_minus=spec.tau_minus, a_plus=spec.a_plus, a_minus=spec.a_minus,
                        w_min=spec.w_min, w_max=spec.w_max, pairing=spec.pairing, bounds=spec.bounds, dt=spec.dt)
    reward = RewardParams(tau_e=spec.tau_e, lr=learning.lr) if learning.rule == "r_stdp" else None
    return params, reward


def projection_stdp(info: Any, complete: bool, device: Any) -> "STDPSynapses":
    """The :class:`STDPSynapses` of a projection's tensors (the batched executor's whole projection,
    or a Ray shard's block of its rows: ``info`` is then the block's part), written once so that
    both hold their synapses alike.  ``complete``: a dense matrix with every pair, whose flat view
    is its synapses in canonical order (no index needed).  On the CPU the step runs in numpy on
    views of the tensors (the same elementwise arithmetic, a fraction of torch's per-call overhead
    on the small arrays of a step); on a GPU in torch."""
    params, reward = stdp_params(info.learning)
    if device.type == "cpu":
        xp, index = np, (lambda a: a)
    else:
        import torch  # noqa: PLC0415

        xp, index = torch, (lambda a: torch.as_tensor(a, device=device))
    return STDPSynapses(params, reward, None if complete else index(info.pre_idx),
                        None if complete else index(info.post_idx), info.pre.size, info.post.size, xp)


class STDPSynapses:
    """Synapses that learn by STDP (or R-STDP when ``reward`` is given): their neurons' traces and,
    for R-STDP, each synapse's eligibility per batch row.  ``pre_index``/``post_index``: each
    synapse's presynaptic and postsynaptic neuron among ``n_pre``/``n_post`` (arrays of ``xp``), or
    both None for every (post, pre) pair in canonical order (an all-to-all projection)."""

    def __init__(self, params: STDPParams, reward: RewardParams | None, pre_index: Any, post_index: Any, n_pre: int,
                 n_post: int, xp: ModuleType):
        self.params, self.reward_params = params, reward
        self.pre_index, self.post_index = pre_index, post_index
        self.n_pre, self.n_post, self.xp = n_pre, n_post, xp
        self.traces: Any = None
        self.eligibility: Any = None

    def reset(self, like: Any, batch: int) -> None:
        """Traces (and eligibility) at 0 for ``batch`` rows, in the dtype and device of ``like``."""
        self.traces = initial_traces(self.n_pre, self.n_post, like, (batch,))
        if self.reward_params is not None:
            n = self.n_pre * self.n_post if self.pre_index is None else self.pre_index.shape[0]
            self.eligibility = (np.zeros((batch, n), like.dtype) if self.xp is np
                                else like.new_zeros((batch, n)))

    def carried(self) -> list | None:
        """The traces (pre, post) and eligibility, for a snapshot of carried state; None before any."""
        return None if self.traces is None else [self.traces.pre, self.traces.post, self.eligibility]

    def load(self, values: list | None) -> None:
        """Put back what :meth:`carried` gave."""
        if values is None:
            self.traces = self.eligibility = None
            return
        self.traces, self.eligibility = STDPTraces(values[0], values[1]), values[2]

    def ready(self, batch: int) -> bool:
        """Whether the traces hold ``batch`` rows (a carried state to continue from)."""
        return self.traces is not None and self.traces.pre.shape[0] == batch

    def step(self, weights: Any, pre_spikes: Any, post_spikes: Any) -> Any:
        """One step with this step's spikes ((batch, n_pre), (batch, n_post)); returns the weights.

        STDP: :func:`ribbed.agents.stdp.stdp_step`'s decay, update and increment.  R-STDP: decay,
        the eligibility takes this step's pairings, increment; the weights do not change until the
        reward (:meth:`rewarded`), which is :func:`~ribbed.agents.stdp.rstdp_step` with a reward of 0
        at every step but the last (the weights are kept within their bounds)."""
        params = self.params
        traces = decay_traces(self.traces, params)
        change = pair_update(weights, traces, pre_spikes, post_spikes, self.pre_index, self.post_index, params)
        if self.reward_params is None:
            weights = apply_update(weights, change, params, self.xp)
        else:
            self.eligibility = eligibility_step(self.eligibility, change, params, self.reward_params)
        self.traces = increment_traces(traces, pre_spikes, post_spikes, params)
        return weights

    def rewarded(self, weights: Any, reward: Any) -> Any:
        """R-STDP's weight change for the task's ``reward`` (one per batch row) at the sample's last
        step: w <- clip(w + lr <r e>, w_min, w_max)."""
        scaled = self.reward_params.lr * reward[:, None] * self.eligibility
        return apply_update(weights, scaled, self.params, self.xp)


def carried_values(state: Any) -> list | None:
    """A carried firing state (or STDP traces) as the plain list a snapshot stores (None stays None)."""
    return None if state is None else list(state)


def task_reward(kind: str, outputs: Any, targets: Any, losses: Any, xp: ModuleType, seed: int, tick: int) -> Any:
    """The reward the task sends each sample at its last step (docs/semantics.md): ``correct``,
    +1 where the label's readout is above every other output's and -1 otherwise (a tie is wrong,
    whatever an argmax would pick; ``targets`` one-hot rows); ``negative_loss``, minus the sample's
    loss; ``shuffled``, the batch's ``correct`` rewards permuted across its samples by
    :func:`reward_permutation` (the null baseline: the same +1/-1 counts, no link to the sample).
    ``seed`` and ``tick`` key that permutation, so that every executor draws the same one."""
    if kind == "negative_loss":
        return -losses
    label = targets > 0.5
    if xp is np:
        best = np.where(label, outputs, -np.inf).max(axis=1)
        rival = np.where(label, -np.inf, outputs).max(axis=1)
        correct = np.where(best > rival, 1.0, -1.0).astype(outputs.dtype)
    else:
        import torch  # noqa: PLC0415

        best = torch.where(label, outputs, -torch.inf).amax(dim=1)
        rival = torch.where(label, -torch.inf, outputs).amax(dim=1)
        correct = torch.where(best > rival, 1.0, -1.0).to(outputs.dtype)
    if kind != "shuffled":
        return correct
    order = reward_permutation(seed, tick, correct.shape[0])
    return correct[order] if xp is np else correct[xp.as_tensor(order, device=correct.device)]


def reward_permutation(seed: int, tick: int, batch: int) -> np.ndarray:
    """The permutation of ``reward: shuffled`` at training tick ``tick``: sample i receives the
    ``correct`` reward of sample ``order[i]``.  ``order`` is the stable argsort of the uniforms
    ``component_uniforms(seed, ("reward-shuffle", tick), (batch,))``: drawn from the scenario seed
    by key, not inside an executor, so all of them shuffle alike (docs/semantics.md, "STDP in a
    tick")."""
    return np.argsort(component_uniforms(seed, ("reward-shuffle", tick), (batch,)), kind="stable")
