"""Shipping to Kaggle: the kaggle CLI wrapper, staged datasets and kernel metadata, and the offline rehearsal."""
