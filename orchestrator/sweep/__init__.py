"""A study as one resumable sweep: the study YAML (``spec.py``), its plan of units with content keys (``plan.py``),
the driver (``driver.py``) that runs the named stages in order (``stages.py``: tokenizers, teacher fine-tunes,
teacher caches, the study's final state; ``students.py``: the student trials as a Ray Tune grid), the Tune
trainable (``tune_trial.py``) and the MLflow bookkeeping (``tracking.py``)."""
