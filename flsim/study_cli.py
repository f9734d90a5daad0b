"""``flsim studies list`` and ``flsim studies run``: the shipped study scenarios and a pass table.

``run`` executes each named study's shipped scenario, ``scenarios/studies/<name>.yaml``, once
per seed, each into its own run directory, and prints one table row per criterion. Every
scenario (with its overrides and seeds) is validated before the first study starts, so a
malformed ``study.*`` value or an unknown name is a usage error (exit 2) that writes nothing.
The exit code is 1 when a study fails a gating criterion or raises, 0 when all pass.
A command that runs studies through :mod:`flsim.api`, so it lives in the face, beside the CLI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flsim.config.errors import ConfigError

EXIT_OK, EXIT_FAILED = 0, 1

#: Where ``run`` looks for ``<name>.yaml`` unless ``--scenarios`` says otherwise.
SCENARIO_DIR = Path("scenarios") / "studies"


@dataclass
class StudyRun:
    """One executed (study, seed): its run directory, summary and wall time."""

    name: str
    seed: int
    run_dir: Path | None
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and self.summary.get("pass") is True


def scenario_dir(given: str | None) -> Path:
    """``--scenarios``, else ``scenarios/studies`` here, else the one next to the package."""
    if given is not None:
        return Path(given)
    if SCENARIO_DIR.is_dir():
        return SCENARIO_DIR
    return Path(__file__).resolve().parents[1] / SCENARIO_DIR


def ordered(studies: dict[str, Any]) -> list[str]:
    """Study names by their number in the project's list, unnumbered ones last, then by name."""
    return sorted(studies, key=lambda n: (studies[n].number is None, studies[n].number or 0, n))


def select(names: list[str], run_all: bool, studies: dict[str, Any]) -> list[str]:
    """The studies to run; an unknown name is a :class:`ConfigError` naming it."""
    if run_all and names:
        raise ConfigError("studies", names, "give study names or --all, not both")
    if not run_all and not names:
        raise ConfigError("studies", None, "name the studies to run, or give --all")
    for name in names:
        if name not in studies:
            raise ConfigError("study", name, f"unknown study; choose from {ordered(studies)}")
    return ordered(studies) if run_all else list(dict.fromkeys(names))


def plan(names: list[str], seeds: list[int] | None, overrides: list[str], directory: Path) -> list[Any]:
    """Every (name, seed) scenario, validated before anything runs: ``[(name, seed, Scenario)]``."""
    from flsim.scenario import load_scenario

    jobs = []
    for name in names:
        path = directory / f"{name}.yaml"
        if not path.is_file():
            raise ConfigError(f"study {name}", str(path), "has no shipped scenario file")
        for seed in seeds if seeds is not None else [None]:
            extra = [] if seed is None else [f"seed={seed}"]
            scenario = load_scenario(path, [*overrides, *extra])
            if scenario.kind != "study" or scenario.study.get("name") != name:
                raise ConfigError("study.name", scenario.study.get("name"), f"{path} must run study {name}")
            jobs.append((name, scenario.seed, scenario))
    return jobs


def run_directory(root: Path, name: str, seed: int) -> Path:
    """``<root>/<name>/<timestamp>-s<seed>``, suffixed ``-2``, ``-3``... if it exists already."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / name / f"{stamp}-s{seed}"
    candidate, suffix = base, 1
    while candidate.exists():
        suffix += 1
        candidate = base.with_name(f"{base.name}-{suffix}")
    return candidate


def execute(name: str, seed: int, scenario: Any, root: Path | None) -> StudyRun:
    """Run one study scenario; an exception is recorded (the run's summary says ``failed``)."""
    from flsim.api import run

    target = run_directory(root if root is not None else Path(scenario.output.dir), name, seed)
    started = time.perf_counter()
    try:
        result = run(scenario, run_dir=target)
    except Exception as exc:  # the study raised: report it in the table, keep running the others
        return StudyRun(name, seed, target, {}, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    return StudyRun(name, seed, result.run_dir, result.summary, time.perf_counter() - started)


# -- the pass table -------------------------------------------------------------------------------
def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else str(value)


def threshold_text(criterion: dict[str, Any]) -> str:
    """``≤ 3``, ``≥ 5`` or ``in [-1.2, -0.8]``."""
    threshold, op = criterion.get("threshold"), criterion.get("op")
    if op == "in" and isinstance(threshold, list | tuple) and len(threshold) == 2:
        return f"in [{_number(threshold[0])}, {_number(threshold[1])}]"
    return f"{ {'<=': '≤', '>=': '≥'}.get(str(op), str(op)) } {_number(threshold)}"


def verdict_text(criterion: dict[str, Any]) -> str:
    """``pass``/``FAIL`` for gates; a non-gating claim reads ``holds``/``not met`` with a note."""
    if criterion.get("gate", True):
        return "pass" if criterion.get("pass") else "FAIL"
    return "claim holds (not gating)" if criterion.get("pass") else "claim not met (not gating)"


def table_rows(runs: list[StudyRun]) -> list[dict[str, str]]:
    """One row per criterion of every run, then one verdict row per run."""
    rows = []
    for r in runs:
        for key, criterion in (r.summary.get("criteria") or {}).items():
            rows.append(
                {
                    "study": r.name,
                    "seed": str(r.seed),
                    "criterion": key,
                    "value": _number(criterion.get("value")),
                    "threshold": threshold_text(criterion),
                    "verdict": verdict_text(criterion),
                    "gate": "gate" if criterion.get("gate", True) else "claim",
                }
            )
        overall = "PASS" if r.passed else ("ERROR" if r.error else "FAIL")
        note = f"(study, {r.seconds:.1f} s)" + ("" if r.error is None else f" {r.error}")
        rows.append(
            {
                "study": r.name,
                "seed": str(r.seed),
                "criterion": note,
                "value": "",
                "threshold": "",
                "verdict": overall,
                "gate": "",
            }
        )
    return rows


COLUMNS = ("study", "seed", "criterion", "value", "threshold", "verdict")
_STYLES = {"pass": "green", "PASS": "bold green", "FAIL": "bold red", "ERROR": "bold red"}


def print_table(runs: list[StudyRun], markdown: bool = False) -> None:
    """The pass table on stdout: rich (colours on a terminal) or a Markdown table."""
    rows = table_rows(runs)
    if markdown:
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS))
        for row in rows:
            print("| " + " | ".join(row[c].replace("|", "\\|") for c in COLUMNS) + " |")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 160)
    table = Table(title="Studies", caption="non-gating claims are reported but do not fail a study")
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in ("seed", "value") else "left")
    for row in rows:
        style = _STYLES.get(row["verdict"], "yellow" if row["gate"] == "claim" else None)
        cells = [row[c] for c in COLUMNS]
        table.add_row(*cells, style=style, end_section=row["criterion"].startswith("(study)"))
    console.print(table)


# -- sub-commands ---------------------------------------------------------------------------------
def _cmd_list(args: argparse.Namespace) -> int:
    from flsim.studies.spec import load_builtin_studies

    studies = load_builtin_studies()
    listing = [
        {"number": studies[n].number, "name": n, "paper": studies[n].paper, "claim": studies[n].claim}
        for n in ordered(studies)
    ]
    if args.json:
        print(json.dumps(listing, indent=2))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Studies")
    for column in ("#", "name", "paper", "claim"):
        table.add_column(column, overflow="fold")
    for item in listing:
        number = "" if item["number"] is None else str(item["number"])
        table.add_row(number, item["name"], item["paper"], item["claim"])
    Console(width=None if Console().is_terminal else 160).print(table)
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from flsim.studies.spec import load_builtin_studies

    names = select(args.names, args.all, load_builtin_studies())
    overrides = list(args.override)
    if args.results_dir is not None:
        overrides.append(f"output.dir={args.results_dir}")
    jobs = plan(names, args.seeds, overrides, scenario_dir(args.scenarios))
    root = Path(args.results_dir) if args.results_dir is not None else None
    runs = []
    for name, seed, scenario in jobs:
        runs.append(execute(name, seed, scenario, root))
        print(f"{'pass' if runs[-1].passed else 'FAIL':<5} {name} seed={seed} {runs[-1].run_dir}", flush=True)
    print_table(runs, markdown=args.markdown)
    failed = [f"{r.name} (seed {r.seed})" for r in runs if not r.passed]
    tail = f"; failed: {', '.join(failed)}" if failed else ""
    print(f"{len(runs) - len(failed)} of {len(runs)} passed{tail}")
    return EXIT_FAILED if failed else EXIT_OK


def register_cli(subparsers: Any) -> None:
    """Add ``studies list`` and ``studies run`` to the ``flsim`` sub-command parser."""
    studies = subparsers.add_parser("studies", help="single-node research studies and their pass table")
    actions = studies.add_subparsers(dest="studies_command", required=True, parser_class=type(studies))

    listing = actions.add_parser("list", help="every study: number, name, paper, claim")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_cmd_list)

    run = actions.add_parser("run", help="run studies' shipped scenarios and print the pass table")
    run.add_argument("names", nargs="*", metavar="NAME", help="studies to run (see `flsim studies list`)")
    run.add_argument("--all", action="store_true", help="every registered study")
    run.add_argument("--seeds", type=int, nargs="+", metavar="SEED", help="one run per seed")
    run.add_argument("--results-dir", metavar="DIR", help="results root (default: the scenario's output.dir)")
    run.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--scenarios", metavar="DIR", help="folder of <name>.yaml (default scenarios/studies)")
    run.add_argument("--markdown", action="store_true", help="print the pass table as Markdown")
    run.set_defaults(func=_cmd_run)
