"""Item 4: what the README promises, every bad input exits 2 naming the key, nothing written."""

from __future__ import annotations

import pytest
import yaml

from tests.builders import merge, tiny_digits, tiny_linreg
from tests.trust.helpers import cli, one_error_line, write_scenario


def _topology_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return tiny_linreg(
        algorithm={"name": "dpsgd", "lr": 0.05, "local_steps": 1, "batch_size": 8},
        clients_per_round=None,
        topology={"file": str(path)},
    )


CASES = {
    "dataset_params typo": (
        tiny_linreg(task={"dataset_params": {"samples_per_clinet": 5}}),
        "task.dataset_params.samples_per_clinet",
    ),
    "dataset_params negative": (tiny_linreg(task={"dataset_params": {"dim": -3}}), "task.dataset_params.dim"),
    "dataset_params nan": (
        tiny_linreg(task={"dataset_params": {"noise": float("nan")}}),
        "task.dataset_params.noise",
    ),
    "dataset_params huge": (
        tiny_linreg(task={"dataset_params": {"dim": 90_000, "samples_per_client": 900_000}}),
        "task.dataset_params",
    ),
    "missing mnist path": (
        tiny_digits(task={"dataset": "mnist_idx", "dataset_params": {"path": "/no/such/mnist"}}),
        "task.dataset_params.path",
    ),
    "missing cifar path": (
        tiny_digits(task={"dataset": "cifar10", "dataset_params": {"path": "/no/such/cifar"}}),
        "task.dataset_params.path",
    ),
    "min_size 2**64": (tiny_digits(task={"partition": {"min_size": 2**64}}), "task.partition.min_size"),
    "num_clients 1e30": (tiny_linreg(task={"num_clients": 1e30}), "task.num_clients"),
    "bernoulli 1e-9": (
        tiny_linreg(clients_per_round=None, participation=1e-9, sampling="bernoulli"),
        "participation",
    ),
    "lr inf": (tiny_linreg(algorithm={"name": "fedavg", "lr": float("inf")}), "algorithm.lr"),
    "lr 'inf' as text": (tiny_linreg(algorithm={"name": "fedavg", "lr": "inf"}), "algorithm.lr"),
    "seed 2**63": (tiny_linreg(seed=2**63), "seed"),
    "name ..": (tiny_linreg(name=".."), "name"),
    "name 500 kB": (tiny_linreg(name="n" * 500_000), "name"),
    "topology ignored by fedavg": (tiny_linreg(topology={"kind": "ring"}), "topology"),
}


def _run_refused(tmp_path, capsys, scenario, key, *extra):
    out = tmp_path / "out"
    text = (
        scenario
        if isinstance(scenario, str)
        else yaml.safe_dump(merge(scenario, {"output": {"dir": str(out)}}))
    )
    path = tmp_path / "s.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    for command in (["validate", str(path)], ["run", str(path), "--progress", "off", *extra]):
        code, _, err = cli(capsys, *command)
        assert code == 2, (command, err[-1000:])
        line = one_error_line(err)
        assert key in line, line
    assert not out.exists(), "a refused scenario left a run directory"
    return line


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_gap_exits_2_naming_the_key_and_writes_nothing(tmp_path, capsys, case):
    scenario, key = CASES[case]
    _run_refused(tmp_path, capsys, scenario, key)


def test_a_5_mb_name_given_as_an_override(tmp_path, capsys):
    path = write_scenario(tmp_path / "s.yaml", tiny_linreg(output={"dir": str(tmp_path / "out")}))
    code, _, err = cli(capsys, "run", str(path), "-o", "name=" + "n" * (5 << 20))
    assert code == 2
    assert one_error_line(err).startswith("flsim: config error: name:")
    assert not (tmp_path / "out").exists()


def test_a_nul_byte_in_output_dir(tmp_path, capsys):
    raw = tiny_linreg()
    path = write_scenario(tmp_path / "s.yaml", yaml.safe_dump(raw) + 'output: {dir: "out\\0x"}\n')
    code, _, err = cli(capsys, "run", str(path))
    assert code == 2
    assert "output.dir" in one_error_line(err) and "NUL" in err
    assert not list(tmp_path.glob("out*"))


def test_a_file_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    code, _, err = cli(capsys, "validate", str(path))
    assert code == 2
    assert "not UTF-8" in one_error_line(err)


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("huge.yaml", "num_nodes: 1.0e+8\nedges: [[0, 1]]\n", "num_nodes"),
        ("huge_int.yaml", "num_nodes: 100000000\nedges: [[0, 1]]\n", "num_nodes"),
        ("bad.json", '{"nodes": [1, 2], "links": 3}', "cannot read topology file"),
        ("truncated.json", '{"nodes": [{"id": 0}', "cannot read topology file"),
        ("latin1.txt", "0 1\n1 caf\xe9\n", "cannot read topology file"),
    ],
)
def test_bad_topology_files(tmp_path, capsys, name, text, words):
    scenario = _topology_file(tmp_path, name, text)
    if name == "latin1.txt":
        (tmp_path / name).write_bytes(text.encode("latin-1"))
    _run_refused(tmp_path, capsys, scenario, words)


def test_an_impossible_partition_found_when_the_data_is_built(tmp_path, capsys):
    """digits cannot give 8 clients 500 samples each: known only once the data exists."""
    scenario = tiny_digits(task={"partition": {"kind": "iid", "min_size": 500}})
    out = tmp_path / "out"
    path = write_scenario(tmp_path / "s.yaml", merge(scenario, {"output": {"dir": str(out)}}))
    code, _, err = cli(capsys, "run", str(path), "--progress", "off")
    assert code == 2
    assert "min_size=500" in one_error_line(err)
    assert not out.exists()


@pytest.mark.parametrize("target", ["/dev/null", "file"])
def test_run_dir_that_is_not_a_directory(tmp_path, capsys, target):
    if target == "file":
        target = str(tmp_path / "a_file")
        (tmp_path / "a_file").write_text("keep me")
    path = write_scenario(tmp_path / "s.yaml", tiny_linreg())
    code, _, err = cli(capsys, "run", str(path), "--run-dir", target, "--progress", "off")
    assert code == 2
    assert "--run-dir" in one_error_line(err)
    if target.endswith("a_file"):
        assert (tmp_path / "a_file").read_text() == "keep me"


def test_an_mnist_directory_without_its_files(tmp_path, capsys):
    """The directory exists (validate passes); its files are checked before the run directory."""
    empty = tmp_path / "mnist"
    empty.mkdir()
    scenario = tiny_digits(task={"dataset": "mnist_idx", "dataset_params": {"path": str(empty)}})
    out = tmp_path / "out"
    path = write_scenario(tmp_path / "s.yaml", merge(scenario, {"output": {"dir": str(out)}}))
    code, _, err = cli(capsys, "run", str(path), "--progress", "off")
    assert code == 2
    assert "task.dataset_params.path" in one_error_line(err)
    assert not out.exists()
