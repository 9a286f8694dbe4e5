"""The batched executor's state: one population's tensors, and one projection's.

A shard of the Ray executor holds blocks of populations in the same classes, so that the learn
stage (:mod:`ribbed.scheduler.batched.learning`) runs on either.
"""

from __future__ import annotations

import torch

from ribbed.agents.activations import TORCH_ACTIVATIONS
from ribbed.agents.optimizers import Optimizer, make_optimizer
from ribbed.environment.network import PopulationInfo, ProjectionInfo
from ribbed.scheduler.batched.guidance import BatchedGuidance
from ribbed.scheduler.batched.projection_tensors import ProjectionTensors

__all__ = ["PopulationTensors", "SynapseTensors"]


class SynapseTensors:
    """One projection's tensors: layout, weights, fixed feedback weights, optimizer."""

    snapshot_attrs = ("optimizer",)  # and the weights, saved in canonical order

    def __init__(self, info: ProjectionInfo, layout: ProjectionTensors):
        self.info = info
        self.layout = layout
        self.weights = layout.tensor(info.weights)
        self.feedback = None if info.feedback is None else layout.tensor(info.feedback)
        self.optimizer: Optimizer | None = (
            None if info.frozen or info.stdp else make_optimizer(info.learning, self.weights)
        )
        self.stdp = None  # STDP projections: their traces (ribbed.scheduler.plasticity.STDPSynapses)
        self.kappa = info.learning.kappa
        self.x: torch.Tensor | None = None  # the presynaptic activity of this tick


class PopulationTensors:
    """One population's tensors and the projections that concern it."""

    snapshot_attrs = ("bias_optimizer", "y", "guidance")  # and the bias; y feeds cycle-closing edges

    def __init__(self, info: PopulationInfo, device: torch.device, dtype: torch.dtype):
        self.info = info
        self.activation = TORCH_ACTIVATIONS[info.activation]
        self.bias = torch.zeros(info.size, dtype=dtype, device=device)
        self.bias_optimizer = make_optimizer(info.learning, self.bias) if info.learns_bias else None
        self.incoming: list[SynapseTensors] = []
        self.sends_error: list[SynapseTensors] = []  # outgoing projections that carry errors back to it
        self.plastic: list[SynapseTensors] = []
        self.dfa: torch.Tensor | None = None  # (size, n_outputs)
        self.broadcast: torch.Tensor | None = None  # broadcast credit's B, (size, n_outputs)
        self.sanger: list[SynapseTensors] = []
        self.plastic_counts: torch.Tensor | None = None  # plastic synapses per neuron (chiral shares)
        self.u: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.delta: torch.Tensor | None = None
        self.credit: torch.Tensor | None = None  # what it learns from: delta, or delta blended with guidance
        self.guidance: BatchedGuidance | None = None
        self.previous: torch.Tensor | None = None  # last tick's y, for cycle-closing projections
        # Time within a tick: the firing state the last step of the last tick left (lif, spiking).
        self.membrane: torch.Tensor | None = None
        self.refractory: torch.Tensor | None = None
