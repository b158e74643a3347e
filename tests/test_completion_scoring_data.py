"""What scores a completion trial is part of its identity (a data audit's findings): replacing the line set, the
validation text or ``version.json`` gives new trial keys (the rerun used to skip every trial and report the
scores of the set before), the training files a key covers are the ones the loader reads (blank lines skipped),
and training text and line set of different preprocessing versions are refused before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tasks.completion.data import content_problems, preprocessing_mismatch

ROOT = Path(__file__).resolve().parent.parent
FILE_2021 = '<s> x = <NUM_LIT:1> <EOL> s = "<STR_LIT>" </s>'
FILE_2020 = '<s> x = 1 <EOL> s = "hello" </s>'


def _corpus(folder: Path, train: str, samples: list[dict], lines: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text("".join(f"{train}\n" for _ in range(lines)))
    (folder / "validation.txt").write_text(f"{train}\n")
    (folder / "line_test.json").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return folder


def _keys(tmp_path: Path, data: Path, **settings: object) -> tuple[list[str], str]:
    from orchestrator.design.completion_plan import _data_facts
    from orchestrator.design.study import build_plan, load_spec

    _data_facts.cache_clear()  # the plan caches the training text's facts by its stamp (mtime, size)
    raw = yaml.safe_load((ROOT / "orchestrator" / "profiles" / "completion-smoke.yaml").read_text())
    raw.update(storage=str(tmp_path / "store"), data=str(data), **settings)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    plan = build_plan(load_spec(path), calibration=None)
    return [t.trial_key for t in plan.trials], plan.data_key


def test_another_line_set_validation_text_or_version_gives_new_keys(tmp_path: Path) -> None:
    data = _corpus(tmp_path / "corpus", FILE_2021, [{"input": "<s> x =", "gt": "<NUM_LIT:1>"}])
    first, data_key = _keys(tmp_path, data)
    assert first and len(set(first)) == len(first)
    assert _keys(tmp_path, data) == (
        first,
        data_key,
    )  # the same files: the same keys (resume finds its trials)
    seen = {tuple(first)}
    edits = [
        lambda: (data / "line_test.json").write_text(
            json.dumps({"input": "<s> s =", "gt": '"<STR_LIT>"'}) + "\n"
        ),
        lambda: (data / "validation.txt").write_text(f"{FILE_2021}\n{FILE_2021}\n"),
        lambda: (data / "version.json").write_text(json.dumps({"codexglue_version": "own"})),
    ]
    for edit in edits:
        edit()
        keys, key = _keys(tmp_path, data)
        assert tuple(keys) not in seen and key != data_key, edit
        seen.add(tuple(keys))
    # the teachers (fine-tuned on the training text alone) keep their key: only the trials are new
    from orchestrator.design.study import build_plan, load_spec

    spec = load_spec(tmp_path / "c.yaml")
    (data / "line_test.json").write_text(json.dumps({"input": "<s> y =", "gt": "2"}) + "\n")
    assert [u.key for u in build_plan(spec, calibration=None).teachers] == [
        u.key for u in build_plan(load_spec(tmp_path / "c.yaml"), calibration=None).teachers
    ]


def test_a_capped_key_covers_the_files_the_loader_reads_blank_lines_skipped(tmp_path: Path) -> None:
    data = _corpus(tmp_path / "corpus", FILE_2021, [{"input": "<s> x =", "gt": "<NUM_LIT:1>"}])
    (data / "train.txt").write_text(f"\n\n{FILE_2021}\n<s> other </s>\n")
    caps = {"max_files": {"train_files": 1}}
    before, _ = _keys(tmp_path, data, **caps)
    (data / "train.txt").write_text(
        "\n\n<s> edited = <NUM_LIT:2> </s>\n<s> other </s>\n"
    )  # the one file trained on
    after, _ = _keys(tmp_path, data, **caps)
    assert before != after
    (data / "train.txt").write_text("\n\n<s> edited = <NUM_LIT:2> </s>\n<s> changed beyond the cap </s>\n")
    assert _keys(tmp_path, data, **caps)[0] == after  # a file past the cap is not trained on


def test_training_text_and_line_set_of_different_versions_are_refused(tmp_path: Path) -> None:
    raw_samples = [{"input": f"<s> x{i} =", "gt": f'"word{i}"'} for i in range(120)]
    tagged_samples = [{"input": f"<s> x{i} =", "gt": "<STR_LIT>"} for i in range(120)]
    mixed = _corpus(tmp_path / "mixed", FILE_2021, raw_samples, lines=120)
    problems = content_problems(mixed)
    assert len(problems) == 1 and problems[0].startswith(
        "train.txt has the 2021 preprocessing's literal placeholders (<STR_LIT>, <NUM_LIT>) and line_test.json has none"
    )
    reverse = _corpus(tmp_path / "reverse", FILE_2020, tagged_samples, lines=120)
    assert preprocessing_mismatch(reverse).startswith("line_test.json has the 2021 preprocessing's")
    assert content_problems(_corpus(tmp_path / "same-2021", FILE_2021, tagged_samples, lines=120)) == []
    assert content_problems(_corpus(tmp_path / "same-2020", FILE_2020, raw_samples, lines=120)) == []
    # a handful of samples may hold no literal at all: too few to tell the versions apart, so not refused
    assert preprocessing_mismatch(_corpus(tmp_path / "few", FILE_2021, raw_samples[:5], lines=120)) is None
