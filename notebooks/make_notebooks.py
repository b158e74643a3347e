"""Writes the analysis notebooks of this folder (output-free). Edit here, then run
`python notebooks/make_notebooks.py`; tests/test_analysis.py checks the .ipynb files match this script."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import os
import sys
import warnings
from pathlib import Path

import pandas as pd

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, via mlflow, without ipywidgets

if (Path.cwd().parent / "orchestrator").is_dir():
    sys.path.insert(0, str(Path.cwd().parent))  # the repo root: works without `pip install -e .`
from orchestrator import analysis as A

STUDY = os.environ.get("STUDY", "smoke")
PAPER = STUDY == "full"  # only the full grid is comparable with the paper's numbers
df = A.load_runs(STUDY, os.environ.get("MLFLOW_TRACKING_URI"))
pd.set_option("display.width", 220)
pd.set_option("display.max_columns", 40)
pd.set_option("display.precision", 4)
done = df[A.load.finished(df)]  # df also holds one row per student trial that never finished (status, diverged)
print(f"study {STUDY!r}: {len(done)} finished runs, by stage {done['stage'].value_counts().to_dict()}")
print(A.load.progress(df))  # planned vs finished trials; the unfinished ones by status, diverged apart
scored = done[done["stage"].isin(["teacher_finetune", "student"])]
print(f"scores are each task's headline metric: {scored.groupby('task')['metric'].first().to_dict()}")
print(f"{int(scored['degenerate'].sum())} of {len(scored)} teacher/student runs are degenerate (score at most the "
      f"task's majority baseline + {A.DEGENERATE_MARGIN}): flagged, and left out of every test, effect size and "
      f"ranking; {int(scored['baseline'].isna().sum())} runs have no known baseline")
if len(A.load.unscored(df)):  # NaN or infinite test_score: in no table, so said here
    print(f"{len(A.load.unscored(df))} runs without a finite score (NaN, inf, or no headline metric recorded): "
          "left out of every table")
levels = A.load.label_levels(df)
if len(levels) > 1:  # the labels factor (README, "Labels on part of the training split"): tables per level
    print("labels levels: " + "; ".join(f"{lv} ({', '.join(f'{t} {A.load.regime(df, t, lv)}' for t in sorted(set(df['task']) - {'none'}))})" for lv in levels))"""


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip())


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(text.strip())


NOTEBOOKS: dict[str, list[nbformat.NotebookNode]] = {
    "01_rq1_effectiveness.ipynb": [
        md("""
# RQ1 Effectiveness: does KD beat plain fine-tuning (FT) of the same student?

Each KD configuration (task, student, teacher, method) against FT of the same student on the same task, paired by
seed. FT does not depend on the teacher, so the same FT runs are the baseline for every teacher. `delta` = KD - FT
on the task's headline metric (column `metric`: defect accuracy, clone F1, exception accuracy, a declared task's
`headline`); Wilcoxon signed-rank p on the
seed pairs, Cliff's delta (KD vs FT), Holm-corrected p across the table, and the `verdict`. Runs at or below
their task's majority baseline are `degenerate`: left out of means and tests (`n_degenerate` per row). A row where
either side has a seed at its baseline, diverged or not finished says "no verdict: ..." instead of a p-value:
the surviving seeds alone would favour the side that fails more often. Below 6 seed pairs the Wilcoxon test
cannot reach p < 0.05 and below 4 scores a side Cliff's delta resolves nothing: the table says "not testable (n =
...)" instead."""),
        code(SETUP),
        md(
            "Every (stage, task, teacher): runs, how many are degenerate, the majority baseline, the best score."
        ),
        code("""
print(f"{A.load.superseded(df)} older runs of rerun trials left out (only each trial's newest run counts)")
A.degenerate_summary(df)"""),
        code("rq1 = A.compare_to_ft(df)\nrq1"),
        md(
            "Per task and method: how many configurations KD wins (degenerate runs left out; `delta` is the mean "
            "paired KD - FT difference), the mean gain, the degenerate student runs of the method (each counted "
            "once, FT in its own row), how many could be tested at all and how many of those survive Holm at 0.05."
        ),
        code("A.tables.effectiveness_summary(df, rq1)"),
        md("The paper's Figure 2 (UniXcoder teacher) beside our means, in percent (full study only)."),
        code("""
if PAPER:
    display(A.beside_paper(df).pivot_table(index=["task", "arch", "size"], columns="method", values=["paper", "ours"]))"""),
        code(
            'A.require(len(rq1), A.load.why_none(df, "no KD-vs-FT comparison: the study needs FT and KD student runs"))'
        ),
    ],
    "02_rq2_teachers.ipynb": [
        md("""
# RQ2 Teacher: code-specific (UniXcoder) vs general-purpose (ModernBERT)

The same student, method, task and seed distilled from each teacher. Side by side: mean headline metric per
teacher (with FT of the same student and each teacher's own score); then the seed-paired Wilcoxon test and Cliff's
delta for each pair of teachers (a - b), Holm-corrected. Teachers differ in their own score, so retention
(student / teacher) is shown as well; it is undefined (NaN) for a teacher at or below its task's majority baseline.
Degenerate runs are left out of means and tests; "not testable (n = ...)" where the seeds cannot resolve a test."""),
        code(SETUP),
        code("side = A.teachers_side_by_side(df)\nside"),
        code("""
rq2 = A.compare_teachers(df)
rq2 if len(rq2) else print("a single teacher in this study: no paired teacher comparison")"""),
        code("A.teacher_scores(df)  # degenerate: the teacher is no better than a constant prediction"),
        code(
            """A.retention(df).pivot_table(index=["task", "student", "method"], columns="teacher", values="retention")"""
        ),
        md("The paper's UniXcoder teacher scores (percent), full study only."),
        code("""
if PAPER:
    display(A.PAPER_TEACHER_SCORES)"""),
        code('A.require(len(side), A.load.why_none(df, "no KD student runs in this study"))'),
    ],
    "03_rq3_methods.ipynb": [
        md("""
# RQ3 Method: logit-based (KD, DIST) vs feature-based (PKD, CKD)

Retention = student score / its teacher's score; `param_ratio` = student / teacher parameters. The paper's
headline: feature-based students keep up to 98% of the teacher's performance with about 5% of its parameters.
Then logit vs feature paired on (student, teacher, seed) (per task, Holm-corrected together; the pooled row is a
family of its own; beside Cliff's delta, which is unpaired, the paired `dominance`: the share of blocks where
feature beats logit minus the share where it loses; the pooled row gives no means, its tasks' metrics differ), and the average rank of
every method (FT included) over (task, student) blocks (FT once; a KD method's score the mean over the teachers)
with the Friedman test and the Nemenyi post-hoc, per labels level when the study has several; a block with runs
at the baseline or unfinished is left out, and the ranking then gives no verdict. Retention is undefined where the teacher is at or below its majority
baseline; degenerate students are left out of summaries, tests and ranks (with counts); a test the sample cannot
resolve says "not testable (n = ...)"."""),
        code(SETUP),
        code("""
ret = A.retention(df)
print(ret.loc[ret["retention"].isna(), "retention_note"].value_counts().to_string())
ret[~ret["degenerate"]].groupby(["task", "teacher", "student", "method"])[["retention", "param_ratio"]].mean()"""),
        code("A.family_summary(df)"),
        code("A.compare_families(df)"),
        code("""
rankings = A.rank_methods_per_level(df)  # one ranking per labels level: each level its own experiment
for level, ranking in rankings.items():
    print(f"labels {level}: " * (len(rankings) > 1) + f"{ranking.n_blocks} complete blocks "
          f"({ranking.n_incomplete} incomplete dropped, {ranking.n_degenerate} degenerate runs left out); "
          f"Friedman: {ranking.verdict}")
pd.concat({level: r.ranks for level, r in rankings.items()}, axis=1).rename_axis("average rank (1 = best)")"""),
        code("""
for level, ranking in rankings.items():
    print(f"labels {level}: " * (len(rankings) > 1) + "Nemenyi post-hoc p-values")
    display(ranking.nemenyi) if ranking.nemenyi is not None else print(f"no Nemenyi post-hoc: {ranking.verdict}")"""),
        md("The paper's scores relative to its teacher (full study only)."),
        code("""
if PAPER:
    p = A.PAPER_FIGURE2.merge(A.PAPER_TEACHER_SCORES[["task", "score"]], on="task", suffixes=("", "_teacher"))
    display(p.assign(retention=p["score"] / p["score_teacher"]).pivot_table(
        index=["task", "arch", "size"], columns="method", values="retention"))"""),
        code(
            'A.require(len(ret), A.load.why_none(df, "no retention rows: teacher_finetune or student runs missing"))'
        ),
    ],
    "04_rq4_students.ipynb": [
        md("""
# RQ4 Student architecture: does resembling the teacher (RoBERTa) help vs a BiGRU?

RoBERTa and BiGRU students of the same size (matched by the name's size suffix, e.g. `roberta-7m` / `bigru-7m`)
for each task, teacher and method, paired by seed (`delta` = RoBERTa - BiGRU). Then every student's score against
its parameter count. The paper's answer: not necessarily. Degenerate runs (at or below the majority baseline) are
left out of means and tests (`n_degenerate`); "not testable (n = ...)" where the seeds cannot resolve a test."""),
        code(SETUP),
        code("""
arch = A.compare_architectures(df)
arch if len(arch) else print("no size with both architectures in this study")"""),
        code("svp = A.score_vs_params(df)\nsvp"),
        md("The paper's Figure 2 by architecture beside ours, in percent (full study only)."),
        code("""
if PAPER:
    display(A.beside_paper(df).pivot_table(index=["task", "method", "size"], columns="arch", values=["paper", "ours"]))"""),
        code('A.require(len(svp), A.load.why_none(df, "no student runs in this study"))'),
    ],
    "05_efficiency.ipynb": [
        md("""
# Efficiency: what KD costs over FT, what the teacher cache saves, how much faster the student is

The paper: KD training costs 2-16x FT, mostly teacher inference at every step; a 7M student infers about 8x faster
than the 126M teacher. Here the teacher runs once per (teacher, task) into a cache shared by every trial.
`cost`: KD train time over FT of the same (task, student, seed, labels level) with the cache (the cache build
amortised per trial beside it). `passes`: teacher passes made (teacher_cache runs) vs what online KD would have made (one pass
over the training set per epoch of every KD trial; forward steps where batch size and train size were logged).
Set `BENCH_JSON` to the overhead benchmark's JSON to see online vs cached timings."""),
        code(SETUP),
        code("""
bench = os.environ.get("BENCH_JSON")
eff = A.efficiency(df, Path(bench) if bench else None)
eff.cost"""),
        code("""
print(f"teacher passes recorded by the study run: {eff.recorded_teacher_passes}")
eff.passes"""),
        code("eff.throughput"),
        code("""
if eff.online is not None:
    print(eff.bench)
    display(eff.online)
else:
    print("no overhead benchmark given (set BENCH_JSON)")"""),
        code(
            'A.require(len(eff.cost), A.load.why_none(df, "no KD run with an FT run of the same task, student and seed"))'
        ),
    ],
    "06_behaviour.ipynb": [
        md("""
# Behaviour: do students agree more with the teacher after KD?

From the `predictions/test.json` artifacts: per student run the share of test samples where it predicts what its
teacher predicts (the teacher's predictions come from its cache run at the run's labels level: each level has its
own teacher); FT runs are compared with every teacher of their task and level. `score` is the run's headline
metric (as in every other notebook); `accuracy` and `acc_on_ft_disagreed` are shares of samples predicted right.
On the samples where the FT student (same task, student, seed, labels level) disagreed with the teacher: does the KD student get them right more often (the paper: yes)?"""),
        code(SETUP),
        code("""
from mlflow import MlflowClient

agr = A.agreement(df, MlflowClient(os.environ.get("MLFLOW_TRACKING_URI")))
agr"""),
        code("A.agreement_summary(agr)"),
        code(
            'A.require(agr["agreement"].notna().any(), A.load.why_none(df, "no student run with predictions and a '
            'teacher cache run"))'
        ),
    ],
    "figure2.ipynb": [
        md("""
# Figure 2: score vs student size per method

The task's headline metric (percent) against student parameters (log scale), mean +- std over the non-degenerate seeds, one
panel row per (teacher, task) for every teacher (and labels level, titled with its regime, when the study has
several), one column per architecture, methods set slightly apart so
overlapping ones stay visible, the teacher as a dashed line, the y axis starting at the task's majority baseline
(dotted) and degenerate runs as grey crosses. For the full study the paper's numbers are drawn as hollow markers.
Written to `$FIGURES_DIR/figure2.png` (default `notebooks/figures/`)."""),
        code(SETUP),
        code("""
from IPython.display import Image

png = A.figure2(df, Path(os.environ.get("FIGURES_DIR", "figures")) / "figure2.png", paper=PAPER, study=STUDY)
print(png)
Image(filename=str(png))"""),
        code("""
if PAPER:
    display(A.beside_paper(df))"""),
        code('assert png.stat().st_size > 0, "figure2.png is empty"'),
    ],
    "07_tuning.ipynb": [
        md("""
# Tuning: what each cell's search found

A study with a `tuning:` section gives every cell (task, teacher, student, method; FT included) the same budget of
configurations on validation before its seeds run (README "Tuning"). Tuning trials are MLflow runs with tag
`stage=tune`; the RQ notebooks read only the final runs (`stage=student`), each tagged `tuned_from` its cell's best
tuning run. Below: each cell's best parameters, how far tuning moved each method from its untuned default (tuned /
default; 1 = not moved), and the tuning curves (best validation selection score so far, by trial). Every sample a
cell spent is a row: diverged ones too (score NaN, `diverged`), and a draw that repeated an earlier configuration
(`duplicate_of`), so `trials` and the curves show the same budget for every cell; a draw that failed for another
reason is listed but is no sample (`spent` False: the study draws it again). Only the cells of the study's current
version are shown (cells of an earlier search space or budget are counted, not shown). A study without tuning has
no tuning runs: the tables are empty."""),
        code(SETUP),
        code("""
from orchestrator.analysis import tuning as T

tune = T.load_tuning(STUDY, os.environ.get("MLFLOW_TRACKING_URI"))
spent = tune[tune["spent"].astype(bool)]
print(f"{len(spent)} tuning samples in {tune['cell'].nunique()} cells "
      f"({int(spent['diverged'].sum())} diverged, {int((spent['duplicate_of'] != '').sum())} repeated draws), "
      f"{int(tune['stopped_early'].sum())} stopped early by the scheduler, "
      f"{int((~tune['spent'].astype(bool)).sum())} failed draws (no sample), "
      f"{tune.attrs.get('stale_cells', 0)} cells of earlier versions left out")
best = T.best_params(tune)
lost = best[best["chosen_by"] == "diverged"]
if len(lost):  # its finals are recorded FAILED (diverged): no configuration to train
    print(f"{len(lost)} of {len(best)} cells had every sample diverge: {sorted(lost['method'])}")
flat = best[best["degenerate"].astype(bool)]
if len(flat):  # its finals run an arbitrary configuration: not a tuned result
    print(f"{len(flat)} of {len(best)} cells found no configuration above a constant prediction on validation "
          "(degenerate): more tuning max_epochs or samples")
best"""),
        md(
            "How far tuning moved each cell from its default, then the geometric mean per method and parameter."
        ),
        code("T.moved_from_default(tune)"),
        code("T.moved_by_method(tune)"),
        code("""
fig = T.plot_tuning_curves(tune)
figures = Path(os.environ.get("FIGURES_DIR", "figures"))
figures.mkdir(parents=True, exist_ok=True)
fig.savefig(figures / "tuning_curves.png", dpi=120)"""),
        md("The RQ tables use final runs only: no tuning run has test metrics."),
        code("""
assert df.loc[df["stage"] == "tune", "primary"].isna().all(), "a tuning run logged test metrics"
print(f"final (stage=student) runs with a headline score: {len(A.student_runs(df))}")"""),
    ],
    "08_completion.ipynb": [
        md("""
# The completion study (DISTIL-CodeGPT): the poster's table, frozen vs in-training, ES/EM against size

GPT-2 students distilled from a GPT-2 code model with DistilBERT's loss (`distil`), scored on CodeXGLUE line-level
completion (ES, EM; beam search on the best-validation weights), with parameters, size (MB) and generation speed.
Teacher modes: `cached` (frozen, exact cache), `cached-topk` (frozen, approximate), `online` (frozen, live) and
`in_training` (the teacher keeps learning); `none` is the LM-only baseline (no teacher signal). Only runs scored on
CodeXGLUE's own line-level set (`completion-full`, or any study on that data) are comparable with the poster;
`completion-local` and `completion-smoke` run on the offline proxy, and a set cut from your own corpus is `own`:
their ES/EM are relative effects only."""),
        code("""
import os
from pathlib import Path

import pandas as pd

if (Path.cwd().parent / "orchestrator").is_dir():
    import sys

    sys.path.insert(0, str(Path.cwd().parent))  # the repo root: works without `pip install -e .`
from orchestrator.analysis import completion as C

STUDY = os.environ.get("STUDY", "completion-smoke")
runs = C.load_completion_runs(STUDY, os.environ.get("MLFLOW_TRACKING_URI"))
POSTER, why = C.poster_comparable(runs)  # by the data the runs were scored on, not the study's name
pd.set_option("display.width", 220)
pd.set_option("display.precision", 3)
print(f"study {STUDY!r}: {len(runs)} finished completion runs, by teacher mode "
      f"{runs['teacher_mode'].value_counts().to_dict()}, data {sorted(set(runs['codexglue_version']) - {''})}")
print(f"{runs.attrs['n_superseded']} older runs of rerun trials left out (only each trial's newest run counts)")
print(why)"""),
        md("""
The poster's table: per student, frozen teacher (`cached`), students initialised from teacher layers, mean over
seeds; the teacher is the baseline row. On CodeXGLUE's set the poster's numbers stand beside ours."""),
        code("C.poster_table(runs, poster=POSTER)"),
        md(
            "Frozen vs in-training (and every other mode, and the LM-only baseline): ES, then EM, per student."
        ),
        code("C.compare_modes(runs, 'test_es')"),
        code("C.compare_modes(runs, 'test_em')"),
        md(
            "What each mode costs (seconds of training and of the teacher per trial), and the in-training teacher's own scores."
        ),
        code("C.mode_costs(runs)"),
        md("ES and EM against student size."),
        code("""
if runs.empty or (runs["stage"] == "student").sum() == 0:
    print("no completion student runs in this study: nothing to plot")
else:
    fig = C.plot_size_curve(runs)
    figures = Path(os.environ.get("FIGURES_DIR", "figures"))
    figures.mkdir(parents=True, exist_ok=True)
    fig.savefig(figures / "completion_size.png", dpi=120)"""),
    ],
}


def build(name: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=NOTEBOOKS[name])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i:02d}"  # stable ids: regenerating gives identical files
    return nb


def main(out_dir: Path = HERE) -> None:
    for name in NOTEBOOKS:
        nbformat.write(build(name), out_dir / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
