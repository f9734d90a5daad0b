"""Median and bands over seeds, time to target and grouping, on hand-made runs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flsim.report import aggregate
from flsim.results.loading import load_results, load_runs


def _long(runs: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    """A load_runs-like frame from ``{run_dir: {column: values}}``."""
    frames = [pd.DataFrame({"run_dir": name, **cols}) for name, cols in runs.items()]
    return pd.concat(frames, ignore_index=True)


def test_median_iqr_and_minmax_over_three_seeds() -> None:
    df = _long(
        {
            "a": {"round": [0, 1, 2], "test_loss": [1.0, 2.0, 3.0]},
            "b": {"round": [0, 1, 2], "test_loss": [2.0, 4.0, 6.0]},
            "c": {"round": [0, 1, 2], "test_loss": [3.0, 6.0, 9.0]},
        }
    )
    curves = aggregate.run_curves(df, "round", "test_loss")
    iqr = aggregate.aggregate_curves(curves, ["a", "b", "c"], "median", "iqr")
    assert iqr["x"].tolist() == [0, 1, 2]
    assert iqr["center"].tolist() == [2.0, 4.0, 6.0]
    # numpy's linear percentiles of (1, 2, 3)·k: 25th = 1.5·k, 75th = 2.5·k
    assert iqr["lo"].tolist() == [1.5, 3.0, 4.5]
    assert iqr["hi"].tolist() == [2.5, 5.0, 7.5]
    assert iqr["n"].tolist() == [3, 3, 3]
    minmax = aggregate.aggregate_curves(curves, ["a", "b", "c"], "median", "minmax")
    assert minmax["lo"].tolist() == [1.0, 2.0, 3.0]
    assert minmax["hi"].tolist() == [3.0, 6.0, 9.0]
    mean = aggregate.aggregate_curves(curves, ["a", "c"], "mean", "none")
    assert mean["center"].tolist() == [2.0, 4.0, 6.0]
    assert mean["lo"].tolist() == mean["hi"].tolist() == mean["center"].tolist()


def test_even_number_of_seeds_median_is_mean_of_middle_two() -> None:
    df = _long(
        {r: {"round": [0], "test_acc": [v]} for r, v in zip("abcd", [0.1, 0.2, 0.6, 0.9], strict=True)}
    )
    stats = aggregate.aggregate_curves(aggregate.run_curves(df, "round", "test_acc"), list("abcd"))
    assert stats["center"].iloc[0] == pytest.approx(0.4)
    assert stats["lo"].iloc[0] == pytest.approx(np.percentile([0.1, 0.2, 0.6, 0.9], 25))
    assert stats["hi"].iloc[0] == pytest.approx(np.percentile([0.1, 0.2, 0.6, 0.9], 75))


def test_only_the_range_every_seed_covers_is_aggregated() -> None:
    df = _long(
        {
            "long": {"round": [0, 1, 2, 3, 4], "test_acc": [0.1, 0.2, 0.3, 0.4, 0.5]},
            "short": {"round": [0, 1, 2], "test_acc": [0.3, 0.4, 0.5]},
        }
    )
    stats = aggregate.aggregate_curves(aggregate.run_curves(df, "round", "test_acc"), ["long", "short"])
    assert stats["x"].tolist() == [0, 1, 2]  # no extrapolation past the short seed's end
    assert stats["center"].tolist() == pytest.approx([0.2, 0.3, 0.4])


def test_unaligned_x_is_interpolated_on_the_union_grid() -> None:
    # Two seeds with different virtual-time stamps on the same line y = 10 x.
    df = _long(
        {
            "a": {"round": [0, 1, 2], "virtual_time": [0.0, 1.0, 2.0], "test_loss": [0.0, 10.0, 20.0]},
            "b": {
                "round": [0, 1, 2, 3],
                "virtual_time": [0.0, 0.5, 1.5, 2.5],
                "test_loss": [0.0, 5.0, 15.0, 25.0],
            },
        }
    )
    stats = aggregate.aggregate_curves(aggregate.run_curves(df, "virtual_time", "test_loss"), ["a", "b"])
    assert stats["x"].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert stats["center"].tolist() == pytest.approx([0.0, 5.0, 10.0, 15.0, 20.0])
    assert stats["lo"].tolist() == pytest.approx(stats["hi"].tolist())


def test_duplicate_x_keeps_the_last_and_nan_is_skipped() -> None:
    # A resumed run re-evaluates round 1; a missing evaluation is NaN.
    df = _long({"a": {"round": [0, 1, 1, 2, 3], "test_acc": [0.1, 0.5, 0.2, np.nan, 0.4]}})
    x, y = aggregate.run_curves(df, "round", "test_acc")["a"]
    assert x.tolist() == [0, 1, 3] and y.tolist() == [0.1, 0.2, 0.4]


def test_quantiles_with_infinity_match_numpy_on_finite_data() -> None:
    rng = np.random.default_rng(0)
    m = rng.normal(size=(7, 4))
    assert np.allclose(aggregate.quantiles(m, [0.25, 0.5, 0.75]), np.percentile(m, [25, 50, 75], axis=0))
    col = np.array([[3.0], [5.0], [np.inf]])
    q25, q50, q75 = aggregate.quantiles(col, [0.25, 0.5, 0.75])
    assert (q25[0], q50[0], q75[0]) == (4.0, 5.0, math.inf)
    # Exactly on a finite rank next to ∞ (numpy gives NaN there): the finite value.
    five = np.array([[1.0], [2.0], [3.0], [np.inf], [np.inf]])
    assert aggregate.quantiles(five, [0.5])[0][0] == 3.0


def _target_frame() -> pd.DataFrame:
    acc = {
        "fast": [0.1, 0.5, 0.7, 0.8, 0.9, 0.95],  # first ≥ 0.8 at round 3 (exactly on the target)
        "slow": [0.1, 0.3, 0.5, 0.6, 0.7, 0.85],  # round 5
        "never": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    }
    runs = {}
    for name, values in acc.items():
        rounds = list(range(6))
        runs[name] = {
            "round": rounds,
            "bytes_total": [1000 * r for r in rounds],
            "virtual_time": [1.5 * r for r in rounds],
            "test_acc": values,
        }
    df = _long(runs)
    return df.sample(frac=1.0, random_state=0)  # row order must not matter


def test_first_reached_per_run() -> None:
    per_run = aggregate.first_reached(_target_frame(), "test_acc", 0.8, "above", ["round", "bytes_total"])
    assert per_run.loc["fast", "round"] == 3 and per_run.loc["fast", "bytes_total"] == 3000
    assert per_run.loc["slow", "round"] == 5
    assert not per_run.loc["never", "reached"] and math.isnan(per_run.loc["never", "round"])


def test_time_to_target_group_median_counts_unreached_as_infinite() -> None:
    df = _target_frame()
    groups = pd.Series({"fast": "g", "slow": "g", "never": "g"})
    out = aggregate.time_to_target(
        df, groups, "test_acc", 0.8, "above", ["round", "bytes_total", "virtual_time"]
    )
    row = out.iloc[0]
    assert (row["group"], row["runs"], row["reached"]) == ("g", 3, 2)
    assert row["round"] == 5.0  # median of (3, 5, ∞)
    assert row["round_lo"] == 4.0 and row["round_hi"] == math.inf  # IQR of (3, 5, ∞)
    assert row["bytes_total"] == 5000.0 and row["virtual_time"] == 7.5
    minmax = aggregate.time_to_target(df, groups, "test_acc", 0.8, "above", ["round"], band="minmax")
    assert minmax.iloc[0]["round_lo"] == 3.0 and minmax.iloc[0]["round_hi"] == math.inf
    # Two of the three never reach 0.9: the median is "not reached".
    strict = aggregate.time_to_target(df, groups, "test_acc", 0.9, "above", ["round"])
    assert strict.iloc[0]["reached"] == 1 and strict.iloc[0]["round"] == math.inf


def test_time_to_target_below_for_gaps() -> None:
    df = _long(
        {
            "a": {"round": [0, 1, 2, 3], "optimality_gap": [1.0, 1e-2, 1e-4, 1e-6]},
            "b": {"round": [0, 1, 2, 3], "optimality_gap": [1.0, 1e-1, 1e-3, 1e-5]},
        }
    )
    groups = pd.Series({"a": "x", "b": "x"})
    out = aggregate.time_to_target(df, groups, "optimality_gap", 1e-3, "below", ["round"])
    assert out.iloc[0]["round"] == 2.0 and out.iloc[0]["reached"] == 2


def test_final_values_are_last_non_missing() -> None:
    df = _long({"a": {"round": [2, 0, 1], "test_acc": [np.nan, 0.1, 0.4], "test_loss": [0.3, 1.0, 0.5]}})
    final = aggregate.final_values(df, ["test_acc", "test_loss", "missing"])
    assert final.loc["a", "test_acc"] == 0.4 and final.loc["a", "test_loss"] == 0.3
    assert math.isnan(final.loc["a", "missing"])


def test_summarize_groups_median_and_band() -> None:
    per_run = pd.DataFrame({"test_acc": [0.7, 0.8, 0.9, 0.5]}, index=["a", "b", "c", "d"])
    groups = pd.Series({"a": "fedavg", "b": "fedavg", "c": "fedavg", "d": "scaffold"})
    out = aggregate.summarize_groups(per_run, groups).set_index("group")
    assert out.loc["fedavg", "runs"] == 3 and out.loc["fedavg", "test_acc"] == pytest.approx(0.8)
    assert out.loc["fedavg", "test_acc_lo"] == pytest.approx(0.75)
    assert out.loc["fedavg", "test_acc_hi"] == pytest.approx(0.85)
    assert out.loc["scaffold", "test_acc"] == 0.5 and out.loc["scaffold", "test_acc_n"] == 1


def test_group_labels_by_dotted_config_keys(make_run, results_root: Path) -> None:
    make_run(algorithm="fedavg", seed=0)
    make_run(algorithm="scaffold", seed=0)
    results = load_results(results_root)
    one = aggregate.group_labels(results.runs, results.configs, ["algorithm"])
    assert sorted(one.tolist()) == ["fedavg", "scaffold"]
    two = aggregate.group_labels(results.runs, results.configs, ["algorithm", "task.partition.alpha"])
    assert sorted(two.tolist()) == ["algorithm=fedavg, alpha=0.3", "algorithm=scaffold, alpha=0.3"]
    missing = aggregate.group_labels(results.runs, results.configs, ["algorithm.mu"])
    assert set(missing) == {"—"}


def test_communications_falls_back_to_events_unless_recorded(make_run, results_root: Path) -> None:
    make_run(seed=0, rounds=2)  # no communications column: events
    rows = [{"round": r, "events": 10 * r, "communications": 3 * r, "test_loss": 1.0} for r in range(3)]
    make_run(seed=1, rows=rows)
    df = load_runs(results_root)
    by_seed = {s: g["communications"].tolist() for s, g in df.groupby("seed")}
    assert by_seed[0] == [0, 20, 40] and by_seed[1] == [0, 3, 6]
