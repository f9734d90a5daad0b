"""Make the README screenshots: docs/report.png (static report) and docs/dashboard.png (live app).

Runs a small real comparison (FedAvg, FedProx and SCAFFOLD on digits, Dirichlet(0.3), three
seeds each), writes the spec report with ``dashboards/centralized.yaml``, then starts one
more run in a background thread and photographs the live dashboard while it is writing.
Uses the same headless Debian chromium as the browser test (``scripts/install-system-deps.sh``).

    .venv/bin/python scripts/dashboard_screenshots.py [--out docs] [--work /tmp/flsim-shots]
"""

from __future__ import annotations

import argparse
import copy
import logging
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import flsim  # noqa: E402
from flsim.dashboard.server import background_server  # noqa: E402
from flsim.report import write_report  # noqa: E402
from tests.dashboard.browser import chromium, console_errors, wait_for  # noqa: E402

log = logging.getLogger("screenshots")

BASE: dict[str, Any] = {
    "name": "digits_dir03",
    "seed": 0,
    "task": {
        "dataset": "digits",
        "num_clients": 20,
        "partition": {"kind": "dirichlet", "alpha": 0.3},
        "model": {"name": "mlp", "hidden": [32]},
    },
    "rounds": 25,
    "clients_per_round": 5,
    "system": {"compute": {"sigma": 0.5, "slow_fraction": 0.2, "slow_factor": 4.0}},
}
ALGORITHMS: dict[str, dict[str, Any]] = {
    "fedavg": {"name": "fedavg", "lr": 0.1, "local_steps": 10, "batch_size": 32},
    "fedprox": {"name": "fedprox", "lr": 0.1, "local_steps": 10, "batch_size": 32, "mu": 0.5},
    "scaffold": {"name": "scaffold", "lr": 0.1, "local_steps": 10, "batch_size": 32},
}


def scenario(algorithm: str, seed: int, rounds: int | None = None) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out["algorithm"] = dict(ALGORITHMS[algorithm])
    out["seed"] = seed
    if rounds is not None:
        out["rounds"] = rounds
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--work", type=Path, default=Path("/tmp/flsim-shots"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    shutil.rmtree(args.work, ignore_errors=True)
    results = args.work / "results"
    for algorithm in ALGORITHMS:
        for seed in range(3):
            flsim.run(scenario(algorithm, seed), run_dir=results / "digits_dir03" / f"{algorithm}-s{seed}")
            log.info("ran %s seed %d", algorithm, seed)
    report = write_report(results, args.work / "report.html", spec=ROOT / "dashboards" / "centralized.yaml")
    args.out.mkdir(parents=True, exist_ok=True)

    live = threading.Thread(
        target=flsim.run,
        args=(scenario("fedavg", 3, rounds=400),),
        kwargs={"run_dir": results / "digits_dir03" / "fedavg-s3-live"},
        daemon=True,
    )
    with chromium(args.work / "profile") as driver:
        driver.set_window_size(1400, 1900)
        driver.get(report.as_uri())
        wait_for(
            lambda: driver.execute_script("return document.querySelectorAll('.js-plotly-plot').length >= 3")
        )
        time.sleep(1.0)
        driver.save_screenshot(str(args.out / "report.png"))
        assert console_errors(driver) == [], console_errors(driver)

        live.start()
        with background_server(results, poll_ms=500) as server:
            driver.set_window_size(1400, 1000)
            driver.get(server.url + "/?interval=500")
            wait_for(
                lambda: driver.execute_script(
                    "var s = window.flsimDashboard; return s && s.order.some(function (id) {"
                    "  var m = s.runs[id].meta; return m.status === 'running' && m.rows >= 20; });"
                ),
                timeout=300,
                what="the live run's first rows",
            )
            time.sleep(1.5)
            driver.save_screenshot(str(args.out / "dashboard.png"))
            assert console_errors(driver) == [], console_errors(driver)
    live.join()
    print(args.out / "report.png")
    print(args.out / "dashboard.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
