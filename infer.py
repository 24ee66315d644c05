"""Ensemble exported models into a submission: `python infer.py --models runs/x/models --test test.csv`."""

from mcq.infer.cli import run

if __name__ == "__main__":
    run()
