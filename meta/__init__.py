"""Meta-controllers: the coupling strength alpha of each neuron or cluster (Meta-BP)."""

from ribbed.meta.controllers import ConfidenceController, FixedController, MetaController, make_controller

__all__ = ["ConfidenceController", "FixedController", "MetaController", "make_controller"]
