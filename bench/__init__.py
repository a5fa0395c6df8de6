"""commap benchmarks: every ``bench/bench_*.py`` module exposes ``run() -> dict``."""
