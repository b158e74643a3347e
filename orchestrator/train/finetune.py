"""Fine-tune a teacher on a task with the paper's recipe (5 epochs, lr 2e-5, batch 32, AdamW, 10% warm-up,
clip 1.0, max length 512), using the same training loop as the students, and save it for KD.

    python -m orchestrator.finetune_teacher --task exception --teacher minilm --data data/local \\
        --out runs/teachers/minilm-exception
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.train import cli_checks
from orchestrator.train.config import PRECISION_HELP, PRECISIONS, TrainConfig
from orchestrator.train.trial import DEFAULT_DATA, below_one, load_data, resolve_teacher
from tasks import BUILTIN_TASKS, SPLITS, get_task
from tasks.labels import LabelSpec, labelled_only

if TYPE_CHECKING:  # torch and transformers load when a fine-tune runs, not for --help
    from orchestrator.train.trainer import TrainResult

TEACHER_RECIPE = TrainConfig(epochs=5, batch_size=32, lr=2e-5)


@dataclass
class FinetuneResult:
    folder: Path
    result: TrainResult


def finetune_teacher(
    teacher: str,
    task: str,
    out_dir: Path,
    data: str = str(DEFAULT_DATA),
    cfg: TrainConfig | None = None,
    max_length: int = 512,
    max_samples: int | None = None,
    trust_remote_code: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
    data_seed: int = 0,
    labels: dict[str, Any] | None = None,
) -> FinetuneResult:
    """Fine-tune ``teacher`` (alias, hub id or folder) on ``task``; the best epoch's weights are saved to
    ``out_dir`` (safetensors + tokenizer), loadable by ``Teacher.load`` and by the teacher cache. ``data_seed``:
    the study's data seed (clone's 10% hub sample), the sample its cache and every trial use. ``labels``: a
    ``LabelSpec`` mapping; the teacher then sees only the labelled part of the training split, as FT does."""
    from kd_methods import build_method
    from models.teacher import Teacher
    from orchestrator.core.paths import writing
    from orchestrator.train.trainer import encode_split, train

    cfg = cfg or TrainConfig(**vars(TEACHER_RECIPE))
    spec = get_task(task)
    model = Teacher.load(resolve_teacher(teacher), spec.num_labels, trust_remote_code=trust_remote_code)
    task_data = labelled_only(load_data(task, data, data_seed, max_samples), LabelSpec.parse(labels), task)
    encoded = {s: encode_split(task_data.split(s), model.encode, max_length, model.pad_id) for s in SPLITS}
    method = build_method("ft", model.shape)
    # Written under a temporary name and renamed when complete: a fine-tune that is killed or runs out of disk
    # leaves no folder a later stage (the cache, a rerun) would take for a teacher.
    with writing(out_dir) as partial:
        work = partial / "_train"
        result = train(model, method, encoded, spec, cfg, out_dir=work, callback=callback)
        model.save(partial)  # train() left the best epoch's weights in the model
        summary = {"teacher": teacher, "task": task, "max_length": max_length, **result.summary()}
        summary["train_samples"] = len(task_data.train)
        (partial / "finetune.json").write_text(json.dumps(summary, indent=2))
        (partial / "test_predictions.json").write_text(json.dumps(result.test_predictions))
        (work / "best.safetensors").unlink(missing_ok=True)
    return FinetuneResult(Path(out_dir), result)


def _parser() -> argparse.ArgumentParser:
    from orchestrator.cli_help import HelpFormatter, OneLineParser

    p = OneLineParser(
        prog="python -m orchestrator.finetune_teacher", description=__doc__, formatter_class=HelpFormatter
    )
    p.add_argument("--task", choices=sorted(BUILTIN_TASKS), help="a built-in task (or --task-file)")
    p.add_argument("--task-file", help="a YAML file declaring your own task (docs/OWN_DATA.md)")
    p.add_argument(
        "--teacher", required=True, help="unixcoder, modernbert, minilm (offline), a hub id or a folder"
    )
    p.add_argument("--out", required=True)
    p.add_argument(
        "--data", default=str(DEFAULT_DATA), help="'hub' or a folder from python -m tasks.build_local"
    )
    p.add_argument("--epochs", type=int, default=TEACHER_RECIPE.epochs)
    p.add_argument("--lr", type=float, default=TEACHER_RECIPE.lr)
    p.add_argument("--batch-size", type=int, default=TEACHER_RECIPE.batch_size)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--max-samples", type=int, help="cap every split (quick runs)")
    p.add_argument("--seed", type=int, default=0, help="the head's initial weights and data order")
    p.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="the data sample (clone's 10%% of the hub); a study's is its first seed",
    )
    p.add_argument("--labels", default="all", help=cli_checks.LABELS_HELP)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--trust-remote-code", action="store_true", help="allow the model's own code (off by default)"
    )
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument(
        "--experiment", help="MLflow experiment when MLFLOW_TRACKING_URI is set (default: teachers)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    from orchestrator.train.cli_checks import guarded

    # a user's mistake is one line, exit 2 (orchestrator/train/cli_checks.py)
    return guarded(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    from orchestrator.train.cli_checks import check_inputs, labels_argument, precheck
    from orchestrator.train.cli_tracking import CliRun, experiment_name
    from orchestrator.train.trial import task_argument

    p = _parser()
    args = p.parse_args(argv)
    task = task_argument(p, args.task, args.task_file)
    if below_one(epochs=args.epochs, batch_size=args.batch_size, max_length=args.max_length):
        return 2
    # values found only once models load (or, for --out, after the fine-tune) otherwise
    precheck(args, "finetune", lambda: task, DEFAULT_DATA, resolve_teacher)
    check_inputs(task, args.data, DEFAULT_DATA, args.max_samples)
    labels = labels_argument(p, args.labels)
    cfg = TrainConfig(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
    )
    tags = {"stage": "teacher_finetune", "task": task, "teacher": Path(args.teacher).name, "method": "none"}
    run = CliRun(
        experiment_name(args.experiment, "teachers"), f"ft-{tags['teacher']}-{task}", tags, vars(args)
    )

    def show(row: dict[str, float]) -> None:
        print(
            f"epoch {int(row['epoch'])}: " + "  ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch")
        )
        run.epoch(row)

    try:
        out = finetune_teacher(
            args.teacher,
            task,
            Path(args.out),
            args.data,
            cfg,
            args.max_length,
            args.max_samples,
            args.trust_remote_code,
            show,
            data_seed=args.data_seed,
            labels=labels,
        )
    except BaseException as err:
        run.fail(err)
        raise
    run.finish(out.result, {"teacher_params": float(out.result.params)})
    print(
        f"teacher saved to {out.folder}; test: "
        + "  ".join(f"{k}={v:.4f}" for k, v in out.result.test.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
