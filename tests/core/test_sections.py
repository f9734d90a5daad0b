"""Config at the ground floor: the parts own their sections through registries (issue 16).

Config must not import the parts; each part registers its section's model or check, the
face's loader imports the parts before validating, and a Ray actor, whose process loaded
nothing, registers the typed sections before it parses the scenario it is sent.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from flsim.config import sections
from flsim.config.errors import ConfigErrors
from flsim.config.schema import Scenario
from flsim.scenario import load_scenario
from tests.builders import tiny_linreg

PARTS = (
    "flsim.algorithms",
    "flsim.tasks",
    "flsim.topology",
    "flsim.compression",
    "flsim.studies",
    "flsim.engine",
)


def _fresh(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_config_alone_imports_no_part_and_refuses_to_validate_without_them():
    probe = f"""
import sys
from flsim.config.loading import validate_scenario
from flsim.config.sections import SectionNotRegistered
print(sorted(m for m in {PARTS!r} if m in sys.modules))
try:
    validate_scenario({{"name": "probe", "task": {{"dataset": "linreg"}}}})
except SectionNotRegistered as exc:
    print("refused:", exc)
"""
    loaded, refused = _fresh(probe).splitlines()
    assert loaded == "[]"
    assert refused.startswith("refused: no part registered the scenario section 'compression'")


def test_a_ray_actor_parses_typed_sections_without_the_face():
    scenario = load_scenario(
        tiny_linreg(
            algorithm={"name": "dpsgd"},
            clients_per_round=None,
            topology={"kind": "ring", "mixing": "max_degree"},
            compression={"uplink": {"kind": "topk", "k": 2}, "choco": {"consensus_lr": 0.5}},
        )
    )
    data = scenario.model_dump(mode="json")
    probe = f"""
from flsim.backends.actor_scenario import scenario_from_data
s = scenario_from_data({data!r})
print(type(s.topology).__name__, s.topology.mixing, type(s.compression).__name__, s.compression.uplink.k)
"""
    assert _fresh(probe) == "TopologyConfig max_degree CompressionConfig 2"
    assert Scenario.model_validate(data) == scenario


def test_owned_sections_keep_typed_access_and_dotted_error_keys():
    scenario = load_scenario(tiny_linreg(compression={"uplink": {"kind": "sign"}, "error_feedback": "ef21"}))
    assert scenario.compression.uplink.kind == "sign" and scenario.topology is None
    with pytest.raises(ConfigErrors) as info:
        load_scenario(
            tiny_linreg(compression={"uplink": {"kind": "topk"}}, topology={"kind": "ring", "x": 1})
        )
    keys = [(error.key, error.reason) for error in info.value.errors]
    assert keys == [
        ("compression.uplink.k", "topk needs exactly one of k and fraction"),
        ("topology.x", "Extra inputs are not permitted"),
    ]


@pytest.fixture
def registry(monkeypatch):
    """An empty check registry, restored afterwards."""
    monkeypatch.setattr(sections, "_CHECKS", {})
    monkeypatch.setattr(sections, "REQUIRED_CHECKS", {"federated": ("b", "a"), "study": ()})


def test_checks_run_required_first_in_the_fixed_order_then_the_others_by_name(registry):
    ran = []
    for name in ("zeta", "a", "b", "alpha"):  # registration order must not matter
        sections.register_check(name, lambda s, name=name: ran.append(name))
    sections.register_check("study_only", lambda s: ran.append("study_only"), kinds=("study",))
    sections.run_checks(Scenario.model_construct(kind="federated"))
    assert ran == ["b", "a", "alpha", "zeta"]
    ran.clear()
    sections.run_checks(Scenario.model_construct(kind="study"))
    assert ran == ["study_only"]


def test_a_check_name_has_one_owner(registry):
    def mine(scenario):
        return None

    def other(scenario):
        return None

    sections.register_check("mine", mine)
    sections.register_check("mine", mine)  # the same function again (a reload): harmless
    with pytest.raises(ValueError, match=r"'mine' is registered by .*mine already"):
        sections.register_check("mine", other)


def test_a_missing_required_check_is_a_programming_error_not_a_pass(registry):
    sections.register_check("b", lambda s: None)
    with pytest.raises(sections.SectionNotRegistered, match=r"\['a'\]"):
        sections.run_checks(Scenario.model_construct(kind="federated"))


def test_a_section_cannot_be_claimed_by_two_models():
    from flsim.topology.config import TopologyConfig

    sections.register_section("topology", TopologyConfig)  # the same owner again: harmless
    with pytest.raises(ValueError, match="owned by TopologyConfig"):
        sections.register_section("topology", Scenario)
