"""Checkpoint import, serving bundles, datasets, offline evaluation and baselines."""
