"""What a study is and what it would run, for either kind, without Ray or an MLflow server: the one loader
(``study.load_spec``) and planner (``study.build_plan``), the specs (``spec.py`` classification, ``completion_spec.py``
completion, ``base.py`` what both have, ``custom_tasks.py``, ``tuning_spec.py``), the typed units a plan is made of
(``units.py``: each trial as its worker runs it), the planners (``plan.py``, ``completion_plan.py``, ``sizes.py``,
``names.py``), the data (``data_source.py``: which folder, built where; ``identity.py``: by content), the checks
before anything starts (``validate.py``), ``--plan``'s text and JSON (``describe.py``), its GPU-hours measured
(``calibrate.py``, ``calibrate_lm.py``) and priced (``calibration.py``), and how many trials share a GPU
(``packing.py``)."""
