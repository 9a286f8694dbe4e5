"""MetaGroupAgent: the second level of a population's meta units (docs/semantics.md,
"Hierarchical meta units").

It hears from every first-level meta unit (a ClusterAgent) of its population in each meta stage
(``feedback`` messages: the tick's loss, the unit's five sums, its meta state, and, when credit
arrived, its members' per-row mean credit and activity), runs the shared hierarchy code
(meta/hierarchy.py) on what they said, and sends each unit its group's alpha (``modulation``).
It is an agent of the message bus, not a Mesa agent: agents.csv has a row per neuron and per
guide on every executor, and the batched executor has no such agent to show.
"""

from __future__ import annotations

import numpy as np

from ribbed.meta.hierarchy import Hierarchy
from ribbed.scheduler.messages import Kind, Message, Stage

__all__ = ["MetaGroupAgent"]


class MetaGroupAgent:
    """Owns R_c, R_a, the groups and the group states of one population."""

    agent_kind = "meta_group"
    #: What a snapshot saves (scheduler/state.py).
    snapshot_attrs = ("hierarchy",)

    def __init__(self, agent_id: int, hierarchy: Hierarchy, units: list[int], state_names: list[str]):
        self.unique_id = agent_id
        self.hierarchy = hierarchy
        self.units = units  # the ClusterAgent ids of the first-level units, in unit order
        self.state_names = state_names
        self.inbox: list[Message] = []

    def modulate(self, tick: int, bus) -> None:
        """Read every unit's profile, update the second level, and send each unit its group's alpha;
        then regroup when it is time (the new groups' states from the units' states)."""
        by_unit = {m.src: m.payload for m in self.inbox if m.kind == Kind.FEEDBACK}
        self.inbox = [m for m in self.inbox if m.kind != Kind.FEEDBACK]
        payloads = [by_unit[u] for u in self.units]
        k = len(self.state_names)
        loss = np.float64(payloads[0][0])
        sums = np.stack([p[1:6] for p in payloads], axis=1)
        states = {name: np.array([p[6 + i] for p in payloads]) for i, name in enumerate(self.state_names)}
        present = np.array([len(p) > 6 + k for p in payloads])
        if present.any():
            width = max((len(p) - 6 - k) // 2 for p in payloads)
            credit, activity = np.zeros((width, len(payloads))), np.zeros((width, len(payloads)))
            for u in np.flatnonzero(present):
                rows = payloads[u][6 + k:]
                credit[:, u], activity[:, u] = rows[:width], rows[width:]
            self.hierarchy.observe(credit, activity, present)
        group_alpha = self.hierarchy.update(sums, loss)
        bus.send_rows(tick, Stage.META, self.unique_id, self.units, Kind.MODULATION, group_alpha.copy())
        if self.hierarchy.regroups_at(tick):
            self.hierarchy.regroup(states)

    def __repr__(self) -> str:
        return f"MetaGroupAgent({self.unique_id}, units={len(self.units)})"
