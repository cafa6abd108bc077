"""Datasets in the project's own format, their importers, and the evaluation protocols."""
