"""Sub-commands ``flsim dashboard`` and ``flsim export``, registered by ``flsim.cli``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from flsim.config.errors import ConfigError


def _cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        from flsim.dashboard.server import serve
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "dashboard", exc.name, "the live dashboard needs aiohttp: pip install 'flsim-des[dashboard]'"
        ) from None
    root = Path(args.results_dir)
    if not root.is_dir():
        raise ConfigError("results_dir", str(root), "not a directory")
    if not 0 <= args.port <= 65535:
        raise ConfigError("--port", args.port, "must be between 0 and 65535")
    serve(root, host=args.host, port=args.port, poll_ms=args.interval)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from flsim.dashboard.export import export_run

    print(export_run(args.run, args.format, deprecated_output(args)))
    return 0


def deprecated_output(args: argparse.Namespace) -> str | None:
    """``--output``, or the old ``-o`` with a warning: elsewhere ``-o`` means an override."""
    if args.old_output is None:
        return args.output
    logging.getLogger("flsim").warning("'-o' for the output is deprecated here: use --output")
    return args.output if args.output is not None else args.old_output


def register_cli(subparsers: Any) -> None:
    """Add ``dashboard`` and ``export`` to the ``flsim`` sub-command parser."""
    dash = subparsers.add_parser("dashboard", help="live local web dashboard over a results directory")
    dash.add_argument("results_dir", help="results root (or any folder containing runs)")
    dash.add_argument("--port", type=int, default=8050)
    dash.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)"
    )
    dash.add_argument("--interval", type=int, default=2000, metavar="MS", help="page refresh period")
    dash.set_defaults(func=_cmd_dashboard)

    export = subparsers.add_parser("export", help="a run's metrics as CSV or TensorBoard scalars")
    export.add_argument("run", help="a run directory")
    export.add_argument("--format", choices=["csv", "tensorboard"], default="csv")
    export.add_argument("--output", help="file (csv) or log directory (tensorboard)")
    export.add_argument("-o", dest="old_output", help=argparse.SUPPRESS)
    export.set_defaults(func=_cmd_export)
