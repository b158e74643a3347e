"""Training: the loop (``trainer.py``), one trial from config to a trained, evaluated student (``trial.py``, which
also opens a trial's teacher, live or from the cache), teacher fine-tuning (``finetune.py``) and the live teacher
that KD runs every step (``online_teacher.py``)."""
