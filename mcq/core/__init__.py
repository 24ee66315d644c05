"""What the offline Kaggle kernel needs: reading questions, features, batching, the model, prediction, scoring
and the submission. Imports nothing outside mcq.core but mcq.errors and mcq.io."""
