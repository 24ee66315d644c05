"""`python -m mcq.retrieve`."""

from mcq.retrieve.cli import run

run()
