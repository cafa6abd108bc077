"""Engines: one interface (``base.Engine``), two backends (transformers, vLLM)."""
