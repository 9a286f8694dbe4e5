"""Agents: NeuronAgent and the pieces a neuron owns (activation, optimizer state)."""

from ribbed.agents.neuron import NeuronAgent, Synapses

__all__ = ["NeuronAgent", "Synapses"]
