"""`python -m mcq.kaggle`."""

from mcq.kaggle.cli import run

run()
