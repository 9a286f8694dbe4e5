"""The Ray executor on a simulated cluster of three nodes (``ray.cluster_utils.Cluster``): shards
pinned to nodes by their resources land on those nodes, and the result is the batched one."""

from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from conftest import model_from  # noqa: E402
from ribbed.scenarios.loader import load_scenario  # noqa: E402
from test_executors import ATOL, RTOL  # noqa: E402

NODES = ("zone_a", "zone_b", "zone_c")


@pytest.fixture(scope="module")
def cluster():
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {NODES[0]: 1}, "object_store_memory": 80 * 2**20, "include_dashboard": False})
    for name in NODES[1:]:
        cluster.add_node(num_cpus=1, resources={name: 1}, object_store_memory=80 * 2**20)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
def test_shards_land_on_their_nodes_and_match_the_batched_result(cluster):
    scenario = load_scenario("digits-fa").model_dump(mode="json", exclude_none=True)
    scenario["run"].update({"ticks": 12, "eval_every": 6})
    batched = model_from({**scenario, "backend": {"kind": "batched", "dtype": "float64", "device": "cpu"}})
    sharded = model_from({**scenario, "backend": {
        "kind": "ray", "dtype": "float64", "shards": 3, "split_above": 16, "address": cluster.address,
        "placement": "strict_spread", "shard_resources": [{"zone_c": 1}, {"zone_a": 1}, {"zone_b": 1}]}})
    try:
        node_of = {name: node["NodeID"] for node in ray.nodes() if node["Alive"]
                   for name in NODES if name in node["Resources"]}
        assert sharded.executor.shard_nodes == [node_of["zone_c"], node_of["zone_a"], node_of["zone_b"]]
        for _ in range(12):
            batched.step()
            sharded.step()
            assert sharded.last_result.loss == pytest.approx(batched.last_result.loss, rel=RTOL, abs=ATOL)
        for projection in batched.network.projections:
            np.testing.assert_allclose(sharded.executor.read("weights", projection.name),
                                       batched.executor.read("weights", projection.name), rtol=RTOL, atol=ATOL)
        assert sharded.executor.describe()["partitioning"]["cut_synapses"] > 0
    finally:
        sharded.executor.close()
