"""Benchmarks: each a script (python bench/NAME.py, or python -m bench.NAME); figures in docs/BENCHMARKS.md."""
