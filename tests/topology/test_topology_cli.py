"""``flsim topology show|rates`` through a tiny argparse harness."""

from __future__ import annotations

import argparse
import importlib.util
import io
import json

import pytest

from flsim.config.errors import ConfigError
from flsim.topology import describe_topology
from flsim.topology.cli import register_cli


def _run(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="flsim")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    out = io.StringIO()
    args.stdout = out
    return args.func(args), out.getvalue()


def test_show_json_has_the_spectral_facts():
    code, text = _run("topology", "show", "torus:rows=3,cols=4", "--mixing", "fmmc", "--json")
    info = json.loads(text)
    assert code == 0
    for key in ("n_nodes", "n_edges", "mixing", "slem", "spectral_gap", "chi1", "chi2", "edge_weights"):
        assert key in info
    assert (info["n_nodes"], info["n_edges"], info["mixing"]) == (12, 24, "fmmc")
    assert info["spectral_gap"] == pytest.approx(1 - info["slem"])


def test_show_table_and_named_file():
    code, text = _run("topology", "show", "ring_16")
    assert code == 0 and "slem" in text and "0.949" in text


def test_rates_json():
    code, text = _run("topology", "rates", "barbell:m1=3,m2=1", "--json")
    info = json.loads(text)
    assert code == 0
    for key in ("total_rate", "uniform_total_rate", "chi1", "chi2", "rates"):
        assert key in info
    assert info["total_rate"] < info["uniform_total_rate"]
    assert info["chi1"] * info["chi2"] <= 0.5 * (1 + 1e-9)
    assert len(info["rates"]) == 8 and set(info["rates"][0]) == {"edge", "rate"}


def test_user_errors_are_config_errors():
    with pytest.raises(ConfigError) as info:
        _run("topology", "show", "nosuchkind:n=3")
    assert info.value.key == "spec"
    with pytest.raises(ConfigError):
        _run("topology", "show", "ring:n=5", "--mixing", "uniform")
    with pytest.raises(ConfigError):
        _run("topology", "show", "ring:n=2")


def test_plot_writes_a_png_or_says_what_to_install(tmp_path):
    """PNG always works (matplotlib, plotly + kaleido, else the built-in NumPy/zlib writer);
    other formats need matplotlib or kaleido and otherwise name what to install."""
    target = tmp_path / "g.png"
    code, _ = _run("topology", "show", "ring:n=5", "--plot", str(target), "--json")
    assert code == 0 and target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    can_plot_svg = importlib.util.find_spec("matplotlib") is not None or (
        importlib.util.find_spec("plotly") is not None and importlib.util.find_spec("kaleido") is not None
    )
    if not can_plot_svg:
        with pytest.raises(ConfigError, match="matplotlib") as info:
            _run("topology", "show", "ring:n=5", "--plot", str(tmp_path / "g.svg"))
        assert info.value.key == "--plot"


def test_function_api():
    info = describe_topology("complete:n=4", "fdla")
    assert info["slem"] == pytest.approx(0.0, abs=1e-7)
