"""A pooled dataset directory without its files fails ``flsim validate`` (exit 2), not a run."""

from __future__ import annotations

import pytest
import yaml

from flsim.cli import main


@pytest.mark.parametrize(
    ("dataset", "missing"), [("mnist_idx", "train-images-idx3-ubyte"), ("cifar10", "data_batch_1")]
)
def test_validate_names_the_missing_file(tmp_path, capsys, dataset, missing):
    empty = tmp_path / "data"
    empty.mkdir()
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        yaml.safe_dump({"task": {"dataset": dataset, "dataset_params": {"path": str(empty)}}})
    )
    assert main(["validate", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert "task.dataset_params.path" in err and missing in err
