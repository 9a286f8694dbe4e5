"""The contract suite runs every test here against every registered executor (and the batched
executor on cuda when torch sees a GPU): the ``executor`` fixture names one, and ``on(executor,
scenario)`` puts a scenario on it.  Ray runs quietly in this process, started once."""

from __future__ import annotations

import pytest
import torch

from ribbed.scheduler.registry import registered

#: (executor kind, backend fields) for every registered executor, in float64 so that results agree
#: to a tight tolerance; the batched executor also on cuda when there is one.
TARGETS = [(kind, {} if kind == "reference" else {"dtype": "float64"}) for kind in sorted(registered())]
TARGETS = [(kind, {**extra, "device": "cpu"} if kind == "batched" else extra) for kind, extra in TARGETS]
if torch.cuda.is_available():
    TARGETS.append(("batched", {"dtype": "float64", "device": "cuda"}))


def _id(target) -> str:
    kind, extra = target
    return kind + (f"-{extra['device']}" if extra.get("device") not in (None, "cpu") else "")


@pytest.fixture(scope="session")
def ray_session():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
    yield
    if started:
        ray.shutdown()


@pytest.fixture(params=TARGETS, ids=_id)
def executor(request) -> tuple[str, dict]:
    kind, extra = request.param
    if kind == "ray":
        request.getfixturevalue("ray_session")
    return kind, extra


def on(executor: tuple[str, dict], scenario: dict, **backend) -> dict:
    """``scenario`` on the executor (with extra backend fields, e.g. shards)."""
    kind, extra = executor
    fields = {**extra, **backend} if kind == "ray" else dict(extra)
    if kind == "ray":
        fields.setdefault("shards", 2)
    return {**scenario, "backend": {"kind": kind, **fields}}
