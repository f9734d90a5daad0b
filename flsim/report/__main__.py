"""``python -m flsim.report RESULTS... -o report.html``: a CLI-independent entry point."""

from __future__ import annotations

import argparse
import logging
import sys

from flsim.report.html import write_report


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and write the report; returns a process exit code."""
    parser = argparse.ArgumentParser(prog="python -m flsim.report", description=__doc__)
    parser.add_argument("paths", nargs="+", help="run, scenario or results-root directories")
    parser.add_argument("-o", "--out", default="report.html", help="output HTML file (default: report.html)")
    parser.add_argument("--title", default=None, help="page title")
    parser.add_argument("--spec", default=None, help="dashboard spec YAML, e.g. dashboards/centralized.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = write_report(args.paths, args.out, title=args.title, spec=args.spec)
    except (FileNotFoundError, ValueError) as exc:  # includes ConfigError(s) from a bad spec
        logging.getLogger("flsim.report").error("%s", exc)
        return 2
    logging.getLogger("flsim.report").info("report: %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
