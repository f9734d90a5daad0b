"""The live dashboard's API, incremental reads and file serving (no browser)."""

from __future__ import annotations

import http.client
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from flsim.dashboard.server import is_loopback, resolve_under
from flsim.dashboard.store import RunStore, run_id_for


def _get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    """A raw GET: http.client sends ``path`` byte for byte (no normalisation of ``..``)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body, response.headers


def _json(url: str, path: str) -> Any:
    status, body, _ = _get(url, path)
    assert status == 200, (path, status, body)
    return json.loads(body)


def _append(run_dir: Path, row: dict[str, Any]) -> None:
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def test_runs_listed_and_new_runs_appear(make_run, server) -> None:
    make_run(algorithm="fedavg", seed=0, rounds=3)
    make_run(algorithm="fedprox", seed=0, rounds=2, parquet=False, status="running")
    runs = _json(server.url, "/api/runs")["runs"]
    assert {(r["algorithm"], r["status"], r["rows"]) for r in runs} == {
        ("fedavg", "completed", 4),
        ("fedprox", "running", 3),
    }
    assert all(re.fullmatch(r"[0-9a-f]{12}", r["id"]) for r in runs)
    assert "bytes_total" in runs[0]["metrics"] and "communications" in runs[0]["metrics"]
    make_run(algorithm="scaffold", seed=1, rounds=1)
    time.sleep(1.1)  # the store rescans the tree at most once a second
    assert len(_json(server.url, "/api/runs")["runs"]) == 3


def test_metrics_since_returns_only_appended_rows(make_run, server) -> None:
    run = make_run(algorithm="fedprox", seed=0, rounds=2, parquet=False, status="running")
    rid = run_id_for(run.relative_to(run.parents[1]).as_posix())
    first = _json(server.url, f"/api/runs/{rid}/metrics?since=0")
    assert first["next"] == 3 and first["columns"]["round"] == [0, 1, 2]
    assert first["columns"]["bytes_total"] == [0, 3000, 6000]
    _append(run, {"round": 3, "events": 60, "bytes_up": 3000, "bytes_down": 6000, "test_acc": 0.5})
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"round": 4, "test_')  # a write in progress: not returned yet
    second = _json(server.url, f"/api/runs/{rid}/metrics?since=3")
    assert second["since"] == 3 and second["next"] == 4 and not second["reset"]
    assert second["columns"]["round"] == [3] and second["columns"]["test_acc"] == [0.5]
    assert second["columns"]["communications"] == [60]
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('acc": 0.6}\n')
    assert _json(server.url, f"/api/runs/{rid}/metrics?since=4")["columns"]["test_acc"] == [0.6]


def test_rewritten_log_resets(make_run, server) -> None:
    run = make_run(seed=0, rounds=4, parquet=False, status="running")
    rid = run_id_for(run.relative_to(run.parents[1]).as_posix())
    assert _json(server.url, f"/api/runs/{rid}/metrics?since=0")["next"] == 5
    tmp = run / ".rewind.tmp"  # what a resume does: atomic rewrite with fewer rows
    tmp.write_text("".join(json.dumps({"round": r, "test_acc": 0.1}) + "\n" for r in range(2)))
    os.replace(tmp, run / "metrics.jsonl")
    again = _json(server.url, f"/api/runs/{rid}/metrics?since=5")
    assert again["reset"] and again["since"] == 0 and again["columns"]["round"] == [0, 1]
    assert again["generation"] == 1


def test_parquet_only_run(make_run, server) -> None:
    run = make_run(seed=0, rounds=2, jsonl=False)
    rid = run_id_for(run.relative_to(run.parents[1]).as_posix())
    data = _json(server.url, f"/api/runs/{rid}/metrics?since=1")
    assert data["columns"]["round"] == [1, 2]


def test_bad_requests(make_run, server) -> None:
    run = make_run(seed=0)
    rid = run_id_for(run.relative_to(run.parents[1]).as_posix())
    assert _get(server.url, f"/api/runs/{rid}/metrics?since=-1")[0] == 400
    assert _get(server.url, f"/api/runs/{rid}/metrics?since=abc")[0] == 400
    assert _get(server.url, "/api/runs/0123456789ab/metrics")[0] == 404
    assert _get(server.url, "/api/runs/..%2f..%2fetc/metrics")[0] == 404


SECRET = "top secret outside the results dir"


@pytest.mark.parametrize(
    "path",
    [
        "/files/../secret.txt",
        "/files/..%2fsecret.txt",
        "/files/..%2Fsecret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/%2e%2e%2fsecret.txt",
        "/files/%252e%252e%252fsecret.txt",
        "/files/s/../../secret.txt",
        "/files/s/..%2f..%2fsecret.txt",
        "/files/..\\secret.txt",
        "/files/..%5csecret.txt",
        "/files//etc/passwd",
        "/files/%2fetc%2fpasswd",
        "/files/%00",
        "/files/escape.txt",
        "/files/digits_iid/link/secret.txt",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/assets/..%2f..%2fsecret.txt",
    ],
)
def test_path_traversal_is_rejected(make_run, server, results_root: Path, path: str) -> None:
    make_run(seed=0)
    secret = results_root.parent / "secret.txt"
    secret.write_text(SECRET)
    (results_root / "escape.txt").symlink_to(secret)  # a symlink out of the root
    (results_root / "digits_iid" / "link").symlink_to(results_root.parent, target_is_directory=True)
    status, body, _ = _get(server.url, path)
    assert status in (400, 403, 404), (path, status)
    assert SECRET.encode() not in body and b"root:" not in body


def test_files_under_root_are_served_as_text(make_run, server) -> None:
    run = make_run(seed=0)
    status, body, headers = _get(server.url, f"/files/digits_iid/{run.name}/config.yaml")
    assert status == 200 and b"name: digits_iid" in body
    assert headers["Content-Type"].startswith("text/plain")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert _get(server.url, f"/files/digits_iid/{run.name}")[0] == 404  # directories are not listed


def test_resolve_under_unit(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "f.txt").write_text("x")
    assert resolve_under(root.resolve(), "a/f.txt") == (root / "a" / "f.txt").resolve()
    for bad in ["../root/a/f.txt", "a/../a/f.txt", "/a/f.txt", "a\\f.txt", "%2e%2e/x", "a/./f.txt", ""]:
        assert resolve_under(root.resolve(), bad) is None, bad


def test_host_header_and_security_headers(make_run, server) -> None:
    make_run(seed=0)
    assert _get(server.url, "/api/runs", {"Host": "evil.example:8050"})[0] == 421
    assert _get(server.url, "/api/runs", {"Host": "localhost:8050"})[0] == 200
    status, body, headers = _get(server.url, "/")
    assert status == 200
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert not re.search(rb"<script(?![^>]*\bsrc=)[^>]*>", body)  # no inline script
    assert re.findall(rb'<script src="([^"]+)"', body) == [
        b"/assets/plotly.min.js",
        b"/assets/dashboard.js",
        b"/assets/studies.js",  # the study panel (flsim.dashboard.studies)
    ]
    status, js, _ = _get(server.url, "/assets/plotly.min.js")
    assert status == 200 and b"plotly.js v" in js[:2000]


def test_is_loopback() -> None:
    assert (
        is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("[::1]")
    )
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.com")


def test_store_reads_incrementally(make_run, results_root: Path) -> None:
    run = make_run(seed=0, rounds=1, parquet=False, status="running")
    store = RunStore(results_root)
    (state,) = store.runs()
    assert len(state.rows) == 2 and state.status == "running"
    offset = state._offset
    _append(run, {"round": 2, "test_acc": 0.3})
    store.refresh()
    assert len(state.rows) == 3 and state._offset > offset
    (run / "summary.json").write_text(json.dumps({"status": "completed"}))
    os.utime(run / "summary.json", (1e9, 1e9))  # a different mtime, whatever the clock resolution
    store.refresh()
    assert state.status == "completed"


def test_cli_registration_defaults() -> None:
    import argparse

    from flsim.dashboard.cli import register_cli

    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dashboard", "results"])
    assert (args.host, args.port, args.results_dir) == ("127.0.0.1", 8050, "results")
    args = parser.parse_args(["export", "run", "--format", "csv"])
    assert args.format == "csv"


def test_export_csv(make_run, tmp_path: Path) -> None:
    import pandas as pd

    from flsim.dashboard.export import export_run

    run = make_run(seed=0, rounds=3)
    out = export_run(run, "csv", tmp_path / "m.csv")
    frame = pd.read_csv(out)
    assert frame["round"].tolist() == [0, 1, 2, 3]
    assert {"test_acc", "bytes_total", "communications"} <= set(frame.columns)
    assert "run_dir" not in frame.columns


def test_export_tensorboard_without_the_package_is_a_usage_error(make_run, monkeypatch) -> None:
    from flsim.config.errors import ConfigError
    from flsim.dashboard.export import export_run

    # A ``None`` entry in sys.modules makes the import fail, whether or not a writer is installed.
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match="tensorboardX"):
        export_run(make_run(seed=0), "tensorboard")
