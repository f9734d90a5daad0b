"""Plugins (issue 19 item 6): a ``plugins:`` key and the ``flsim.plugins`` entry points register
algorithms before validation; a module that cannot be imported is exit 2 naming its entry."""

from __future__ import annotations

import sys
import textwrap

import pytest

import flsim
from flsim.algorithms import REGISTRY
from flsim.cli import main
from flsim.config.errors import ConfigError
from flsim.config.plugins import shippable_paths
from flsim.scenario import load_scenario
from tests.builders import metrics_without_wall_time, tiny_linreg

PLUGIN = textwrap.dedent(
    '''
    from flsim.algorithms.base import register
    from flsim.algorithms.fedavg import FedAvg


    @register
    class Renamed(FedAvg):
        """FedAvg under another name: a plugin that the built-in fedavg must reproduce."""

        name = "plugin_test_fedavg"
    '''
)


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """A one-file plugin on sys.path; unregistered and forgotten afterwards."""
    (tmp_path / "flsim_test_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "flsim_test_plugin"
    REGISTRY.pop("plugin_test_fedavg", None)
    sys.modules.pop("flsim_test_plugin", None)


def test_a_scenario_key_loads_the_plugin_before_its_algorithm_is_checked(tmp_path, plugin_module):
    raw = tiny_linreg()
    raw["algorithm"] = {**raw["algorithm"], "name": "plugin_test_fedavg"}
    with pytest.raises(ConfigError, match="unknown algorithm"):
        load_scenario(raw)
    scenario = load_scenario({**raw, "plugins": [plugin_module]})
    assert scenario.plugins == [plugin_module]
    plugin = flsim.run({**raw, "plugins": [plugin_module]}, run_dir=tmp_path / "plugin")
    builtin = flsim.run(tiny_linreg(), run_dir=tmp_path / "builtin")
    assert metrics_without_wall_time(plugin.run_dir) == metrics_without_wall_time(builtin.run_dir)
    # Not installed: Ray ships its file to the actors (runtime_env py_modules).
    assert shippable_paths([plugin_module]) == [str(tmp_path / "flsim_test_plugin.py")]


@pytest.mark.parametrize(
    ("plugins", "message"),
    [
        (["no_such_plugin_xyz"], "plugins.0: cannot import module 'no_such_plugin_xyz'"),
        (["json", "not a module"], "plugins.1"),
        ("flsim_test_plugin", "plugins: must be a list of module names"),
    ],
)
def test_a_bad_plugins_entry_is_exit_2_naming_it(tmp_path, capsys, plugins, message):
    path = tmp_path / "s.yaml"
    import yaml

    path.write_text(yaml.safe_dump({**tiny_linreg(), "plugins": plugins}))
    assert main(["validate", str(path)]) == 2
    assert message in capsys.readouterr().err
    assert main(["run", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()


def test_a_plugin_that_raises_on_import_is_exit_2_with_its_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_plugin_xyz.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "s.yaml"
    path.write_text(f"plugins: [broken_plugin_xyz]\nname: {tiny_linreg()['name']}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "plugins.0: cannot import module 'broken_plugin_xyz' (RuntimeError: boom at import)" in err
