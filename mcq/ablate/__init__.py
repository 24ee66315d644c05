"""Ablations: train named variants of one config on the same data and seeds, and compare them against the seed
noise (per-seed paired differences, and a bootstrap over questions for the ensembles)."""
