"""`python -m mcq.generate`."""

from mcq.generate.cli import run

run()
