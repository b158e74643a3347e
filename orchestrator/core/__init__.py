"""The ground floor: what every other room of ``orchestrator/`` stands on and nothing here stands on them.

``log.py`` (the driver's log line, how loud a study is), ``device.py`` (device and precision resolution),
``process.py`` (a study process's environment, Ray's start on loopback, stopping what it started), ``paths.py``
(where a study's files go under ``--storage``, content keys), ``errors.py`` (one-line user errors),
``yaml_file.py`` (a YAML file's errors by line), ``tracking.py`` (MLflow: the store, the server, runs) and
``lock.py`` (one driver per study). Modules here import no other ``orchestrator`` folder
(``tests/test_layout.py`` checks it)."""
