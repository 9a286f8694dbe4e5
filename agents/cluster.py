"""ClusterAgent: the owner of a guide shared by a group of neurons, and of their meta state.

The coupling decides which neurons a cluster serves (a single neuron under direct coupling, a
hash bucket, a node of the tree).  A cluster answers its members' ``guidance`` requests with
its guide's predictions, learns from the ``feedback`` they send when the true credit arrives,
and, if it is a meta unit (the cluster that sets its members' alpha), updates alpha in the
``meta`` stage and tells its members (``modulation``).  Like a neuron, it knows only what its
messages tell it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mesa
import numpy as np

from ribbed.agents.mesa_idioms import MeasuredCluster, TickedWhole
from ribbed.scheduler.messages import Kind, Message, Stage

if TYPE_CHECKING:
    from ribbed.environment.network import PopulationInfo
    from ribbed.meta.controllers import MetaController
    from ribbed.scheduler.reference.bus import MessageBus

__all__ = ["ClusterAgent"]


class ClusterAgent(TickedWhole, MeasuredCluster, mesa.Agent):
    """One guide (and, for a meta unit, one meta state) serving a group of neurons."""

    agent_kind = "cluster"
    #: What a snapshot saves (scheduler/state.py).
    snapshot_attrs = ("guide", "meta_state", "alpha")

    def __init__(self, model: mesa.Model, agent_id: int, population: PopulationInfo, index: int, guide,
                 controller: MetaController | None):
        super().__init__(model)
        self.unique_id = agent_id
        self.population_info = population
        self.index = index  # the guide's index within its population
        self.guide = guide
        self.controller = controller  # set on meta units only
        self.meta_state = {k: np.float64(v) for k, v in controller.initial_state().items()} if controller else {}
        self.alpha = controller.initial_alpha() if controller else float("nan")
        self.members: list[int] = []  # neuron ids served by this guide (set when the coupling regroups)
        self.inbox: list[Message] = []
        # This tick's sums over the feedback rows: (guide - credit)^2, credit^2, guide * credit,
        # guide^2, and the row count.
        self._sums = np.zeros(5)
        #: This tick's per-row means over the members' feedback of their credit and activity (the
        #: profile a hierarchy correlates), or None without feedback.
        self._profile: tuple[np.ndarray, np.ndarray] | None = None
        #: The id of the population's MetaGroupAgent when its meta has a hierarchy, and its weight w.
        self.meta_group: int | None = None
        self.group_weight = 0.0

    def take(self, kind: Kind) -> list[Message]:
        taken = [m for m in self.inbox if m.kind == kind]
        if taken:
            self.inbox = [m for m in self.inbox if m.kind != kind]
        return taken

    def answer(self, tick: int, bus: MessageBus) -> None:
        """Predict the credit of every member that asked, from the features it sent."""
        for message in self.take(Kind.GUIDANCE):
            bus.send(Message(tick, Stage.GUIDE, self.unique_id, message.src, Kind.GUIDANCE,
                             self.guide.predict(message.payload)))

    def learn(self) -> None:
        """Learn from the feedback of this tick: rows ``[features..., target, guidance, credit]``,
        in delivery order; ``target`` is what this guide should have said (the credit minus what
        the guides above it said)."""
        feedback = self.take(Kind.FEEDBACK)
        self._sums[:] = 0.0
        self._profile = None
        if not feedback:
            return
        if self.meta_group is not None:  # each message holds one member's rows: [features, target, guidance, credit]
            self._profile = (np.mean([m.payload[:, -1] for m in feedback], axis=0),
                             np.mean([m.payload[:, 1] for m in feedback], axis=0))
        rows = np.concatenate([m.payload for m in feedback])
        self.guide.partial_fit(rows[:, :-3], rows[:, -3])
        guidance, credit = rows[:, -2], rows[:, -1]
        self._sums[:] = (((guidance - credit) ** 2).sum(), (credit**2).sum(), (guidance * credit).sum(),
                         (guidance**2).sum(), rows.shape[0])

    def refit(self) -> None:
        """Replay guides (tree, sklearn): fit on the buffer."""
        self.guide.refit()

    def modulate(self, tick: int, bus: MessageBus) -> None:
        """Meta units: update alpha from this tick's feedback (and the loss the task sent, for
        controllers that use it) and send it to every member."""
        *sums, count = self._sums
        stats = dict(zip(("error", "square", "cross", "guide_square"), (np.float64(s / max(count, 1.0)) for s in sums)))
        loss = np.float64(self.take(Kind.REWARD)[0].payload) if self.controller.needs_loss else np.float64(0.0)
        self.alpha = float(self.controller.update(self.meta_state, stats, np.float64(count > 0), loss, np))
        if self.meta_group is None:
            bus.send_each(tick, Stage.META, self.unique_id, self.members, Kind.MODULATION, np.float64(self.alpha))
            return
        # Hierarchy: first tell the group agent this tick's profile (docs/semantics.md, "Hierarchical
        # meta units"): [loss, the five sums, the meta state, per-row mean credit, per-row mean activity].
        credit, activity = self._profile if self._profile is not None and self.members else (np.empty(0), np.empty(0))
        payload = np.concatenate([[loss], self._sums, [self.meta_state[k] for k in self.meta_state], credit, activity])
        bus.send(Message(tick, Stage.META, self.unique_id, self.meta_group, Kind.FEEDBACK, payload))

    def pass_on(self, tick: int, bus: MessageBus) -> None:
        """Hierarchy: blend this unit's alpha with the one its group sent, (1 - w) alpha_u + w alpha_G,
        and send that to every member."""
        (message,) = self.take(Kind.MODULATION)
        alpha = (1.0 - self.group_weight) * np.float64(self.alpha) + self.group_weight * np.float64(message.payload)
        bus.send_each(tick, Stage.META, self.unique_id, self.members, Kind.MODULATION, np.float64(alpha))

    def __repr__(self) -> str:
        return f"ClusterAgent({self.unique_id}, population={self.population_info.name!r}, guide={self.index})"
