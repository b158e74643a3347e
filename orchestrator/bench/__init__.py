"""Benchmarks, run in-process without Ray: ``overhead.py`` measures what KD costs over plain fine-tuning, with the
teacher cached vs run online (``python -m orchestrator.bench overhead``)."""
