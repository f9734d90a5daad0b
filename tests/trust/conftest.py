"""The dashboard fixtures (a results root, fabricated runs, a live server) for the trust tests."""

from tests.dashboard.conftest import make_run, results_root, server

__all__ = ["make_run", "results_root", "server"]
