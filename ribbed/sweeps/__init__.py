"""Sweeps: a scenario over a grid of field values and seeds (``ribbed sweep``, ``ribbed.sweep``).

:mod:`.grid` expands ``--set`` and ``--seeds`` into points, :mod:`.folder` keeps the sweep's folder
(``sweep.json``, a lock), :mod:`.workers` runs points on local processes or Ray tasks,
:mod:`.results` writes ``sweep.parquet``, and :mod:`.core` puts them together.  Importing this
package loads neither torch nor Ray: the workers do, when they run a point.
"""

from ribbed.sweeps.core import SweepInterrupted, SweepResult, resume_sweep, sweep

__all__ = ["SweepInterrupted", "SweepResult", "resume_sweep", "sweep"]
