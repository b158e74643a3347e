"""A study run as one resumable sweep, for either kind (classification or completion): the command
(``driver.py``), the run (``run.py``: lock, fast path, MLflow and Ray, the stages in order; ``context.py``: what
the stages share), the kind's teacher stages (``stages.py`` classification, ``completion_stages.py``
completion), the tuning stage (``tuning_stage.py``, ``tuning.py``, ``tuning_trial.py``), the trial stage and the
study's final state (``trials.py``), the one trial wrapper (``trial.py``) and what a trial of each kind does
(``work.py``), ``--status`` (``status.py``), ``--plan`` and the end summary (``report.py``), a finished study
answered from the store (``fastpath.py``), spent vs planned hours (``cost.py``), node loss (``node_loss.py``) and
the MLflow UI's view of a study (``mlflow_view.py``). What a study is and would run: ``orchestrator/design/``."""
