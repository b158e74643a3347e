"""The orchestrator, one room per stage (map: docs/ARCHITECTURE.md).

``train/`` the loop, a trial, teacher fine-tuning, live teachers; ``cache/`` the teacher cache; ``sweep/`` a study
as a Ray Tune sweep recorded in MLflow; ``analysis/`` tables, statistics, figures and notebooks from MLflow;
``bench/`` benchmarks. ``study.py``, ``trial.py`` and ``finetune_teacher.py`` are the commands
(``python -m orchestrator.study`` ...)."""
