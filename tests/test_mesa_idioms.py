"""Mesa's per-agent idioms that a ribbed network cannot honour raise, naming the ribbed way,
instead of running and changing nothing (issue 15): ``shuffle_do("step")`` and ``remove()``."""

from __future__ import annotations

import numpy as np
import pytest

import ribbed
from ribbed.errors import RibbedError


def xor_on(backend: str) -> ribbed.NetworkModel:
    scenario = ribbed.load_scenario("xor").model_dump(mode="json", exclude_none=True)
    scenario["backend"] = {"kind": backend}
    return ribbed.NetworkModel(scenario)


@pytest.mark.parametrize("backend", ["reference", "batched"])
def test_asking_the_agents_to_step_is_refused_with_the_ribbed_way(backend: str):
    model = xor_on(backend)
    before = model.projections[model.network.projections[0].name].get_weights().copy()
    with pytest.raises(RibbedError, match=r"(?s)does not step on its own.*model\.step\(\) runs one tick"):
        model.agents.shuffle_do("step")
    with pytest.raises(RibbedError, match="does not step on its own"):
        model.agents.do("step")
    np.testing.assert_array_equal(model.projections[model.network.projections[0].name].get_weights(), before)
    model.step()  # the model's own step ticks the network
    assert model.tick == 1


@pytest.mark.parametrize("backend", ["reference", "batched"])
def test_removing_a_neuron_is_refused_and_it_stays(backend: str):
    model = xor_on(backend)
    agent = model.neurons[3]
    count = len(model.agents)
    with pytest.raises(RibbedError, match=r"(?s)cannot leave a running ribbed network.*set_weights"):
        agent.remove()
    assert len(model.agents) == count and agent in model.agents


def test_clusters_refuse_the_same():
    scenario = ribbed.load_scenario("digits-specialize").model_dump(mode="json", exclude_none=True)
    scenario["backend"] = {"kind": "batched"}
    model = ribbed.NetworkModel(scenario)
    clusters = list(model.executor.clusters)
    assert clusters, "digits-specialize has clusters"
    with pytest.raises(RibbedError, match="does not step on its own"):
        clusters[0].step()
    with pytest.raises(RibbedError, match="cannot leave a running ribbed network"):
        clusters[0].remove()
