"""``python -m flsim.dashboard RESULTS_DIR [--port 8050] [--host 127.0.0.1]``, as ``flsim dashboard``."""

from __future__ import annotations

import argparse
import logging
import sys

from flsim.config.errors import ConfigError
from flsim.dashboard.cli import register_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flsim.dashboard")
    sub = parser.add_subparsers(dest="command", required=True)
    register_cli(sub)
    args = parser.parse_args(["dashboard", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except ConfigError as exc:
        logging.getLogger("flsim.dashboard").error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
