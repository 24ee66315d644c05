"""mcq: fine-tune, ensemble and ship a multiple-choice transformer for the Kaggle LLM Science Exam."""

__version__ = "0.2.0"
