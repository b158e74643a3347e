"""``python -m orchestrator.finetune_teacher``: fine-tune a teacher for KD. The code is ``orchestrator/train/finetune.py``."""

from orchestrator.train.finetune import main

if __name__ == "__main__":
    raise SystemExit(main())
