"""Message delivery for the reference executor.

Messages sent during a stage wait in ``pending`` until :meth:`MessageBus.deliver` puts them
in their receivers' inboxes, in the order they were sent (the canonical order: agents act in
id order within a level).  Messages along a cycle-closing projection wait until the next
tick.  The bus counts every message by kind.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ribbed.scheduler.messages import TASK, Kind, Message, Stage

__all__ = ["MessageBus"]


class MessageBus:
    """Holds messages between their sending and their delivery."""

    #: What a snapshot saves (scheduler/state.py): the counts, and the messages held over to
    #: the next tick (along cycle-closing edges) as columns.
    snapshot_attrs = ("counts", "held_over")

    @property
    def held_over(self) -> dict:
        messages = self.next_tick
        return {"tick": np.array([m.tick for m in messages], dtype=np.int64),
                "stage": np.array([m.stage for m in messages], dtype=np.int64),
                "src": np.array([m.src for m in messages], dtype=np.int64),
                "dst": np.array([m.dst for m in messages], dtype=np.int64),
                "kind": np.array([m.kind for m in messages], dtype=np.int64),
                "payload": [m.payload for m in messages]}

    @held_over.setter
    def held_over(self, columns: dict) -> None:
        self.next_tick = [Message(int(t), Stage(s), int(a), int(b), Kind(k), p) for t, s, a, b, k, p in zip(
            columns["tick"], columns["stage"], columns["src"], columns["dst"], columns["kind"], columns.get("payload", []))]

    def __init__(self, agents: Sequence):
        self.agents = agents  # indexed by agent id
        self.task_inbox: list[Message] = []
        self.pending: list[Message] = []
        self.next_tick: list[Message] = []
        self.counts = np.zeros(len(Kind), dtype=np.int64)
        self.batch_size = 0  # the width of this tick's payloads

    def start_tick(self, batch_size: int) -> None:
        """Begin a tick: deliver the messages held over from the previous one."""
        self.batch_size = batch_size
        self.pending, self.next_tick = self.next_tick, []
        self.deliver()

    def send(self, message: Message) -> None:
        self.pending.append(message)
        self.counts[message.kind] += 1

    def send_each(self, tick: int, stage: Stage, src: int, targets: Sequence[int], kind: Kind,
                  payload: np.ndarray, delayed: bool = False) -> None:
        """Send the same payload to every target."""
        queue = self.next_tick if delayed else self.pending
        queue.extend([Message(tick, stage, src, dst, kind, payload) for dst in targets])
        self.counts[kind] += len(targets)

    def send_rows(self, tick: int, stage: Stage, src: int, targets: Sequence[int], kind: Kind,
                  payloads: np.ndarray) -> None:
        """Send ``payloads[i]`` to ``targets[i]``."""
        self.pending.extend([Message(tick, stage, src, dst, kind, row) for dst, row in zip(targets, payloads)])
        self.counts[kind] += len(targets)

    def deliver(self) -> None:
        """Put every pending message in its receiver's inbox."""
        agents, task_inbox = self.agents, self.task_inbox
        for message in self.pending:
            if message.dst == TASK:
                task_inbox.append(message)
            else:
                agents[message.dst].inbox.append(message)
        self.pending = []

    def take_task_inbox(self) -> list[Message]:
        taken, self.task_inbox = self.task_inbox, []
        return taken
