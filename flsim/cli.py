"""``flsim`` command line: parse, validate, dispatch. No simulation logic lives here.

Exit codes: 0 success, 1 a run failed or diverged, 2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from flsim.config.errors import ConfigError, ConfigErrors, clip
from flsim.results.writer import RunDiverged

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on usage errors already; make its message name the problem."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"flsim: error: {message}\n")


def _cmd_run(args: argparse.Namespace) -> int:
    from flsim.api import resume, run

    if args.resume:
        if args.scenario or args.override:
            raise ConfigError("--resume", args.resume, "takes no scenario file or -o overrides")
        result = resume(args.resume, progress=args.progress)
    else:
        if not args.scenario:
            raise ConfigError("scenario", None, "give a scenario file (or --resume DIR)")
        result = run(
            args.scenario,
            args.override,
            run_dir=args.run_dir,
            backend=args.backend,
            address=args.address,
            progress=args.progress,
        )
    print(result.run_dir)
    if args.report:
        from flsim.report import write_report

        write_report([result.run_dir], Path(args.report))
        print(args.report)
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    """Scenario files, and sweep files (every expanded run is validated)."""
    from flsim.config.loading import read_yaml
    from flsim.scenario import load_scenario
    from flsim.sweep import expand_sweep

    status = EXIT_OK
    for path in args.files:
        try:
            if set(read_yaml(path)) == {"sweep"}:
                _, runs = expand_sweep(path)
                print(f"ok      {path} (sweep of {len(runs)} runs)")
                continue
            load_scenario(path, args.override)
            print(f"ok      {path}")
        except (ConfigError, ConfigErrors) as exc:
            status = EXIT_USAGE
            print(f"invalid {path}: {_one_line(exc)}", file=sys.stderr)
    return status


def _one_line(exc: ConfigError | ConfigErrors) -> str:
    """The first error in full and the keys of the others: one line, whatever the input."""
    if isinstance(exc, ConfigError):
        return str(exc)
    first, rest = exc.errors[0], exc.errors[1:]
    if not rest:
        return str(first)
    keys = ", ".join(clip(e.key, 60) for e in rest[:4]) + (", ..." if len(rest) > 4 else "")
    return f"{first} (and {len(rest)} more: {keys})"


def _cmd_list(args: argparse.Namespace) -> int:
    from flsim.algorithms import REGISTRY
    from flsim.config.plugins import load_entry_point_plugins
    from flsim.tasks import DATASETS, MODELS, PARTITIONERS

    load_entry_point_plugins()  # installed plugins' algorithms are listed with the built-in ones
    if args.details is not None:
        return _list_details(args.details or None, args.json)

    listing = {
        "algorithms": sorted(REGISTRY),
        "datasets": sorted(DATASETS),
        "models": sorted(MODELS),
        "partitioners": sorted(PARTITIONERS),
    }
    if args.json:
        print(json.dumps(listing, indent=2))
    else:
        for kind, names in listing.items():
            print(f"{kind}: {', '.join(names)}")
    return EXIT_OK


def _list_details(name: str | None, as_json: bool) -> int:
    """``list --details [NAME]``: typed parameters, defaults and descriptions from the models."""
    from flsim.describe import details, format_details

    listing = details(name)
    if not listing:
        raise ConfigError("list --details", name, "is no registered algorithm, dataset or study")
    print(json.dumps(listing, indent=2, default=str) if as_json else format_details(listing).rstrip())
    return EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    """``flsim schema``: the scenario format as JSON Schema, for editors (see the README)."""
    from flsim.config.plugins import load_entry_point_plugins
    from flsim.describe import scenario_schema

    load_entry_point_plugins()  # an installed plugin's algorithm gets its branch of the schema
    text = json.dumps(scenario_schema(), indent=2) + "\n"
    if args.output:
        from flsim.results.writer import atomic_write_bytes

        atomic_write_bytes(Path(args.output), text.encode())
        print(args.output)
    else:
        print(text, end="")
    return EXIT_OK


def _cmd_sweep(args: argparse.Namespace) -> int:
    from flsim.sweep import plan_sweep, run_sweep

    if args.dry_run:
        _spec, root, runs, todo = plan_sweep(args.file, args.output_dir, args.override)
        for run in runs:
            print(f"{'run' if run in todo else 'skip':<5} {root / run.label}")
        print(f"{len(todo)} to run, {len(runs) - len(todo)} already completed (skipped)")
        return EXIT_OK
    backend = "ray" if args.address else (args.backend or "local")
    outcomes = run_sweep(
        args.file,
        backend=backend,
        address=args.address,
        output_dir=args.output_dir,
        progress=args.progress,
        overrides=args.override,
    )
    for outcome in outcomes:
        status = "skipped" if outcome.skipped else outcome.status
        line = f"{status:<10} {outcome.run_dir}"
        print(line if outcome.error is None else f"{line}  ({outcome.error})")
    failed = sum(o.status != "completed" for o in outcomes)
    skipped = sum(o.skipped for o in outcomes)
    done = len(outcomes) - failed - skipped
    print(f"{done} completed, {failed} failed, {skipped} skipped (already completed)")
    return EXIT_FAILED if failed else EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:
    from flsim.api import replay_run

    print(replay_run(args.source, args.run_dir).run_dir)
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from flsim.dashboard.cli import deprecated_output
    from flsim.report import NoRunsError, write_report

    output = deprecated_output(args) or "report.html"
    try:
        out = write_report(
            [Path(p) for p in args.runs], Path(output), title=args.title, spec=args.spec, plotly=args.plotly
        )
    except (FileNotFoundError, NoRunsError) as exc:  # a mistyped path: a usage error, exit 2
        raise ConfigError("runs", args.runs, str(exc)) from None
    print(out)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flsim", description="Deterministic federated-learning simulator.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run one scenario")
    run.add_argument("scenario", nargs="?", help="scenario YAML file")
    run.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--run-dir", help="write the run exactly here")
    run.add_argument("--backend", choices=["local", "ray"])
    run.add_argument("--address", help="Ray cluster address to join (implies --backend ray)")
    run.add_argument("--resume", metavar="DIR", help="continue a killed run from its checkpoint")
    run.add_argument("--report", metavar="HTML", help="also write an HTML report of this run")
    run.add_argument("--progress", choices=["auto", "bar", "lines", "off"], default="auto")
    run.set_defaults(func=_cmd_run)

    validate = sub.add_parser("validate", help="check scenario files without running them")
    validate.add_argument("files", nargs="+")
    validate.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    validate.set_defaults(func=_cmd_validate)

    listing = sub.add_parser("list", help="registered algorithms, datasets, models, partitioners")
    listing.add_argument("--json", action="store_true")
    listing.add_argument(
        "--details",
        nargs="?",
        const="",
        metavar="NAME",
        help="typed parameters with defaults and descriptions (all, or one algorithm, dataset or study)",
    )
    listing.set_defaults(func=_cmd_list)

    schema = sub.add_parser("schema", help="JSON Schema of the scenario format (for editors)")
    schema.add_argument("--output", metavar="FILE", help="write it here instead of to stdout")
    schema.set_defaults(func=_cmd_schema)

    _add_sweep_replay_report(sub)
    for module in _PLUGINS:
        module.register_cli(sub)
    return parser


def _add_sweep_replay_report(sub: argparse._SubParsersAction) -> None:
    """The commands that run many scenarios or read run directories: sweep, replay, report."""
    sweep = sub.add_parser("sweep", help="run a grid of scenarios x seeds")
    sweep.add_argument("file", help="sweep YAML file")
    sweep.add_argument("--backend", choices=["local", "ray"], help="ray: runs become parallel Ray tasks")
    sweep.add_argument("--address", help="Ray cluster address to join (implies --backend ray)")
    sweep.add_argument("--output-dir", help="results root (default: the base scenario's output.dir)")
    sweep.add_argument(
        "-o", "--override", action="append", default=[], metavar="KEY=VALUE", help="sets a base scenario key"
    )
    sweep.add_argument("--dry-run", action="store_true", help="list the runs and which are done; run none")
    sweep.add_argument("--progress", choices=["auto", "bar", "lines", "off"], default="auto")
    sweep.set_defaults(func=_cmd_sweep)

    replay = sub.add_parser("replay", help="replay a wall-clock run's event log deterministically")
    replay.add_argument("source", help="run directory of a time: wall run (holds events.jsonl)")
    replay.add_argument("--run-dir", required=True, help="where to write the replayed run")
    replay.set_defaults(func=_cmd_replay)

    report = sub.add_parser("report", help="self-contained HTML report comparing runs")
    report.add_argument("runs", nargs="+", help="run directories or folders containing runs")
    report.add_argument("--output", metavar="HTML", help="where to write it (default report.html)")
    report.add_argument("-o", dest="old_output", help=argparse.SUPPRESS)
    report.add_argument(
        "--plotly",
        choices=["inline", "file"],
        default="inline",
        help="inline: embed plotly.js (4.8 MB, works alone); file: one shared plotly.min.js beside it",
    )
    report.add_argument("--title")
    report.add_argument("--spec", metavar="YAML", help="dashboard spec, e.g. dashboards/centralized.yaml")
    report.set_defaults(func=_cmd_report)


def _plugins() -> list:
    """Feature packages that add their own sub-commands (``topology``, ``dashboard``, ``studies``, ...)."""
    import importlib

    found = []
    for name in ("flsim.topology.cli", "flsim.dashboard.cli", "flsim.study_cli"):
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return found


_PLUGINS = _plugins()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except (ConfigError, ConfigErrors) as exc:
        print(f"flsim: config error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except RunDiverged as exc:
        print(f"flsim: run diverged: {exc} (summary.json says status: diverged)", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("flsim: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a run that failed: summary.json already says so
        logging.getLogger("flsim").debug("run failed", exc_info=True)
        print(f"flsim: run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
