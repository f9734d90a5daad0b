"""``python -m benchmarks``: run every benchmark in turn; each prints its own ratios."""

import importlib

BENCHMARKS = ["engine_overhead", "ray_overhead", "state_store"]

if __name__ == "__main__":
    for name in BENCHMARKS:
        print(f"== {name} ==", flush=True)
        importlib.import_module(f"benchmarks.{name}").main([])
