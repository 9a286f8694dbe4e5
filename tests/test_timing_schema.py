"""The scenario's time-within-a-tick sections (scenarios/timing.py) against the firing arithmetic
they configure (agents/firing.py), and the promise that today's scenarios do not change.

The scenario layer states the firing policy's ranges and defaults itself (it may not import the
agents): these tests hold the two statements to each other, so that every ``firing`` section a
scenario accepts builds a valid :class:`~ribbed.agents.firing.FiringPolicy` with the same values.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from ribbed.agents.firing import SURROGATES, FiringPolicy, policy_of
from ribbed.scenarios.loader import load_scenario
from ribbed.scenarios.timing import SURROGATE_DEFAULTS, FiringSpec
from ribbed.scenarios.validation import timed_field

from test_bad_input import BASE as VALID  # noqa: E402  (the same small valid xor network)

BASE = {**copy.deepcopy(VALID), "name": "timed"}

#: The built-ins that keep today's tick (every one but those made for time within a tick).
TIMED_BUILTINS = {"digits-spiking", "digits-sequence", "digits-sequence-frozen", "mackey-glass", "moons-reward",
                  "stdp-pairs"}
BUILTINS = sorted(p for p in (Path(__file__).resolve().parents[1] / "scenarios" / "builtin").glob("*.yaml")
                  if p.stem not in TIMED_BUILTINS)


def test_surrogate_defaults_are_the_firing_modules() -> None:
    assert SURROGATE_DEFAULTS == {kind: default for kind, (_, default) in SURROGATES.items()}


def test_a_left_out_firing_section_is_the_rate_policy() -> None:
    assert policy_of(None) == FiringPolicy()
    assert policy_of(FiringSpec()) == FiringPolicy()
    assert FiringSpec().surrogate.parameter is None and FiringPolicy().surrogate.parameter == 2.0


specs = st.one_of(
    st.builds(dict, policy=st.just("rate")),
    st.builds(dict, policy=st.just("threshold"), threshold=st.floats(-5, 5), strict=st.booleans(),
              refractory=st.integers(0, 10)),
    st.builds(dict, policy=st.just("lif"), beta=st.floats(0, 1), threshold=st.floats(0.1, 5),
              reset=st.sampled_from(["subtract", "zero", "none"]), reset_delay=st.booleans(),
              refractory=st.integers(0, 10),
              surrogate=st.builds(dict, kind=st.sampled_from(sorted(SURROGATES)),
                                  parameter=st.one_of(st.none(), st.floats(0.01, 100)))),
    st.builds(dict, policy=st.just("random"), temperature=st.floats(0.01, 10), strict=st.booleans()),
)


@given(specs)
def test_every_accepted_firing_section_builds_the_same_policy(section: dict) -> None:
    spec = FiringSpec.model_validate(section)
    policy = policy_of(spec)
    for name, value in section.items():
        if name == "surrogate":
            assert policy.surrogate.kind == value["kind"]
            expected = value["parameter"] if value["parameter"] is not None else SURROGATES[value["kind"]][1]
            assert policy.surrogate.parameter == expected
        else:
            assert getattr(policy, name) == value
    assert policy.spiking == spec.spiking == (section["policy"] != "rate")


@pytest.mark.parametrize("path", BUILTINS, ids=[p.stem for p in BUILTINS])
def test_no_builtin_scenario_has_time_in_its_tick(path: Path) -> None:
    scenario = load_scenario(path)
    assert not scenario.timed and timed_field(scenario) is None
    assert scenario.run.steps_per_sample == 1 and scenario.encoding.kind == "direct"
    for population in scenario.populations:
        assert scenario.population_firing(population).policy == "rate"


def test_a_spiking_scenario_loads_and_round_trips() -> None:
    data = copy.deepcopy(BASE)
    data["run"]["steps_per_sample"] = 25
    data["task"] = {"kind": "xor", "encoding": {"kind": "rate", "gain": 2.0}}
    data["populations"][1]["firing"] = {"policy": "lif", "beta": 0.9, "refractory": 2,
                                        "surrogate": {"kind": "fast_sigmoid"}}
    data["populations"][2]["firing"] = {"policy": "lif", "beta": 0.8}
    data["populations"][2]["readout"] = "membrane"
    scenario = load_scenario(data)
    assert scenario.timed and timed_field(scenario) == "run.steps_per_sample"
    hidden, out = scenario.populations[1], scenario.populations[2]
    assert policy_of(scenario.population_firing(hidden)).surrogate.parameter == 25.0
    assert scenario.population_readout(out) == "membrane"
    again = load_scenario(yaml.safe_load(yaml.safe_dump(scenario.model_dump(mode="json"))))
    assert again == scenario


@pytest.mark.parametrize("change, field, readout", [
    (lambda d: d["populations"][2].update(firing={"policy": "threshold"}), "populations[2].firing", "count"),
    (lambda d: d.update(task={"kind": "xor", "encoding": "latency"}), "task.encoding", "mean"),
    (lambda d: d["populations"][1].update(firing={"policy": "random", "temperature": 0.5}), "populations[1].firing",
     "mean"),
    (lambda d: d["populations"][2].update(readout="last"), "populations[2].readout", "last"),
    (lambda d: d.update(task={"kind": "sine", "encoding": "sequence"}) or d["populations"][0].update(size=1)
     or d["populations"][2].update(size=1), "task.encoding", "mean"),
])
def test_what_makes_a_scenario_timed(change, field: str, readout: str) -> None:
    data = copy.deepcopy(BASE)
    change(data)
    scenario = load_scenario(data)
    assert scenario.timed and timed_field(scenario) == field
    assert scenario.population_readout(scenario.populations[2]) == readout


def test_the_size_estimate_counts_every_step_kept_for_the_backward_pass() -> None:
    from ribbed.scenarios.size import estimate_size

    def batch_part(steps: int) -> int:
        data = copy.deepcopy(BASE)
        data["run"]["steps_per_sample"] = steps
        data["backend"] = {"kind": "batched"}
        parts = estimate_size(load_scenario(data)).parts
        return next(p.bytes for p in parts if p.path == "run.batch_size")

    assert batch_part(10) == 10 * batch_part(1)


def test_a_bptt_window_and_a_sequence_round_trip() -> None:
    data = copy.deepcopy(BASE)
    data["task"] = {"kind": "mackey_glass", "window": 6, "horizon": 3, "encoding": "sequence"}
    data["populations"][0]["size"] = data["populations"][2]["size"] = 1
    data["populations"][2]["readout"] = "last"
    data["run"].update(steps_per_sample=6, bptt_window=2)
    scenario = load_scenario(data)
    assert scenario.run.bptt_window == 2 and scenario.encoding.kind == "sequence"
    again = load_scenario(yaml.safe_load(yaml.safe_dump(scenario.model_dump(mode="json"))))
    assert again == scenario
