"""Analysis of a KD study recorded in MLflow (see docs/CONTRACTS.md, section MLflow).

Rooms: ``load.py`` (runs -> one frame), ``stats.py`` (tests, effect sizes), ``tables.py`` and ``methods.py`` (one table per research
question), ``efficiency.py``, ``agreement.py`` (behaviour), ``figures.py`` (the paper's Figure 2), ``notebooks.py``
(``python -m orchestrator.analysis notebooks``). Everything public is importable from ``orchestrator.analysis``.

One tidy frame of the runs (`load_runs`: FINISHED ones, and a row per student trial that never finished), each
scored by its task's own headline metric (`primary`, named by `metric`), then one small function per research question of docs/STUDY.md: RQ1 `compare_to_ft`, RQ2 `compare_teachers`, RQ3 `retention` / `family_summary` /
`compare_families` / `rank_methods`, RQ4 `compare_architectures` / `score_vs_params`, plus `efficiency`,
`agreement` (behaviour), `figure2` and the paper's Figure 2 numbers (`PAPER_FIGURE2`). The notebooks in
notebooks/ call these and stay short; `run_notebooks` executes them headless.

Trustworthiness: every teacher_finetune and student run is compared with its task's majority baseline (the best
score a prediction that ignores its input reaches: a constant, or chance for macro-F1); runs at or below it are ``degenerate``, flagged in every table and left out
of every test, effect size and ranking (with counts). A test or effect size the sample cannot resolve is "not
testable (n = ...)" (``MIN_PAIRS``, ``MIN_EFFECT_N``, ``MIN_BLOCKS``); pooled rows are their own Holm family.

Statistics: Wilcoxon signed-rank (scipy.stats.wilcoxon) on seed-paired scores, Cliff's delta (implemented here
from its definition), Holm correction (statsmodels.stats.multitest.multipletests, installed with
scikit-posthocs), Friedman (scipy.stats.friedmanchisquare) and Nemenyi (scikit_posthocs).
"""

from orchestrator.analysis.agreement import agreement, agreement_summary, load_predictions
from orchestrator.analysis.efficiency import Efficiency, efficiency
from orchestrator.analysis.figures import (
    PAPER_FIGURE2,
    PAPER_SIZES,
    PAPER_TEACHER_SCORES,
    beside_paper,
    build_figure2,
    figure2,
    percent_factor,
)
from orchestrator.analysis.load import (
    ARCH_ORDER,
    COLUMNS,
    DEGENERATE_MARGIN,
    METHOD_ORDER,
    NONE,
    PRIMARY_METRIC,
    RUN_METRICS,
    RUN_PARAMS,
    TAG_COLUMNS,
    TASK_ORDER,
    TEST_METRICS,
    default_teacher,
    degenerate_summary,
    load_runs,
    mark_degenerate,
    student_runs,
    teacher_scores,
    valid_runs,
)
from orchestrator.analysis.methods import (
    MIN_BLOCKS,
    MethodRanking,
    compare_families,
    family_summary,
    rank_methods,
    rank_methods_per_level,
    retention,
)
from orchestrator.analysis.notebooks import (
    NOTEBOOK_DIR,
    NOTEBOOKS,
    REPO_ROOT,
    NotApplicable,
    require,
    run_notebooks,
)
from orchestrator.analysis.stats import (
    MIN_EFFECT_N,
    MIN_PAIRS,
    cliffs_delta,
    holm,
    not_testable,
    paired_comparison,
)
from orchestrator.analysis.tables import (
    compare_architectures,
    compare_teachers,
    compare_to_ft,
    score_vs_params,
    size_key,
    teachers_side_by_side,
)

__all__ = [
    "ARCH_ORDER",
    "COLUMNS",
    "DEGENERATE_MARGIN",
    "Efficiency",
    "METHOD_ORDER",
    "MIN_BLOCKS",
    "MIN_EFFECT_N",
    "MIN_PAIRS",
    "MethodRanking",
    "NONE",
    "NOTEBOOKS",
    "NOTEBOOK_DIR",
    "PAPER_FIGURE2",
    "PAPER_SIZES",
    "PAPER_TEACHER_SCORES",
    "PRIMARY_METRIC",
    "REPO_ROOT",
    "RUN_METRICS",
    "RUN_PARAMS",
    "TAG_COLUMNS",
    "TASK_ORDER",
    "TEST_METRICS",
    "agreement",
    "agreement_summary",
    "beside_paper",
    "build_figure2",
    "cliffs_delta",
    "compare_architectures",
    "compare_families",
    "compare_teachers",
    "compare_to_ft",
    "default_teacher",
    "degenerate_summary",
    "efficiency",
    "family_summary",
    "figure2",
    "holm",
    "load_predictions",
    "load_runs",
    "mark_degenerate",
    "not_testable",
    "paired_comparison",
    "percent_factor",
    "rank_methods",
    "rank_methods_per_level",
    "retention",
    "run_notebooks",
    "require",
    "NotApplicable",
    "score_vs_params",
    "size_key",
    "student_runs",
    "teacher_scores",
    "teachers_side_by_side",
    "valid_runs",
]
