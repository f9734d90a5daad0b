"""Commands that never simulate (report, list, dashboard, topology) must not import torch.

Importing torch costs seconds per process; ``flsim report`` on a laptop should not pay it.
The check runs in a fresh interpreter, because this test process has torch loaded already.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

# The compression and topology parts own their sections' models (flsim.config.sections):
# importing them registers the models, and must stay as light as the schema itself.
PROBE = """
import sys
import flsim.cli
import flsim.compression.config, flsim.topology.config
from flsim.config.schema import Scenario
Scenario.model_validate({"name": "probe", "task": {"dataset": "linreg"}, "algorithm": {"name": "x"},
                         "topology": {"kind": "ring"}, "compression": {"uplink": {"kind": "sign"}}})
print(sorted(name for name in ("torch", "ray", "cvxpy") if name in sys.modules))
"""


def test_the_cli_and_the_scenario_schema_load_without_torch():
    probe = [sys.executable, "-c", PROBE]
    out = subprocess.run(probe, capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("package", ["flsim.compression", "flsim.topology"])
def test_lazy_re_exports_resolve_every_public_name(package):
    import importlib

    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    with pytest.raises(AttributeError, match="no_such_name"):
        module.no_such_name  # noqa: B018


LOW_MODULES = [
    "flsim",
    "flsim.rng",
    "flsim.config.schema",
    "flsim.config.loading",
    "flsim.config.sections",
    "flsim.results.writer",
]


@pytest.mark.parametrize("module", LOW_MODULES)
def test_a_low_module_does_not_load_the_layers_above_it(module):
    above = ("flsim.api", "flsim.cli", "flsim.engine")
    probe = f"import sys, {module}; print(sorted(m for m in {above!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_the_package_still_re_exports_the_api():
    import flsim
    from flsim import api

    assert flsim.run is api.run and flsim.RunResult is api.RunResult
