"""Benchmarks, run in-process without Ray: ``overhead.py`` measures what KD costs over plain fine-tuning, with the
teacher cached vs run online; ``transfer.py`` checks that every KD method passes a real teacher's advantage on to
its student (several seeds, paired against FT). ``cli.py`` is ``python -m orchestrator.bench``."""
