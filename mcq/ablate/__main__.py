"""`python -m mcq.ablate`."""

from mcq.ablate.cli import run

run()
