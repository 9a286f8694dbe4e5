"""Messages: the only way agents influence each other.

A message is ``(tick, stage, src, dst, kind, payload)``; its payload is a vector over the
mini-batch (a matrix for the lateral messages of Sanger's rule).  Kinds and stages are
small integer enums so that a log can store them as typed columns.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

import numpy as np

__all__ = ["Kind", "Message", "Stage", "TASK"]

#: The id that stands for the task (the environment) as a message's source or destination.
TASK = -1


class Stage(IntEnum):
    """The stages of a tick, in the order they run."""

    SENSE = 0
    FORWARD = 1
    READOUT = 2
    BACKWARD = 3
    GUIDE = 4
    LEARN = 5
    META = 6



class Kind(IntEnum):
    """What a message carries."""

    ACTIVATION = 0  # a neuron's activation y (or an input value from the task)
    ERROR = 1  # a credit signal: dL/dy from the task, W*delta, B*delta, or a broadcast delta
    FEEDBACK = 2  # a learning signal between neurons (Sanger's lateral reconstruction)
    TARGET = 3
    REWARD = 4
    GUIDANCE = 5
    MODULATION = 6
    SPIKE = 7


class Message(NamedTuple):
    """One message; created by a sender, delivered by the bus, read once by its receiver."""

    tick: int
    stage: Stage
    src: int
    dst: int
    kind: Kind
    payload: np.ndarray
