"""`python -m mcq.rehearse`: rehearse the Kaggle kernel offline (mcq.kaggle.rehearse)."""

from mcq.kaggle.rehearse import run

if __name__ == "__main__":
    run()
