"""Analysis of a KD study recorded in MLflow (see docs/CONTRACTS.md, section MLflow).

Rooms: ``load.py`` (runs -> one frame), ``stats.py`` (tests, effect sizes), ``tables.py`` (one table per research
question), ``efficiency.py``, ``agreement.py`` (behaviour), ``figures.py`` (the paper's Figure 2), ``notebooks.py``
(``python -m orchestrator.analysis notebooks``). Everything public is importable from ``orchestrator.analysis``.

One tidy frame of FINISHED runs (`load_runs`), then one small function per research question of
/work/shared/STUDY.md: RQ1 `compare_to_ft`, RQ2 `compare_teachers`, RQ3 `retention` / `family_summary` /
`compare_families` / `rank_methods`, RQ4 `compare_architectures` / `score_vs_params`, plus `efficiency`,
`agreement` (behaviour), `figure2` and the paper's Figure 2 numbers (`PAPER_FIGURE2`). The notebooks in
notebooks/ call these and stay short; `run_notebooks` executes them headless.

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
    figure2,
    percent_factor,
)
from orchestrator.analysis.load import (
    ARCH_ORDER,
    COLUMNS,
    METHOD_ORDER,
    NONE,
    PRIMARY_METRIC,
    RUN_METRICS,
    RUN_PARAMS,
    TAG_COLUMNS,
    TASK_ORDER,
    TEST_METRICS,
    default_teacher,
    load_runs,
    student_runs,
    teacher_scores,
)
from orchestrator.analysis.notebooks import NOTEBOOK_DIR, NOTEBOOKS, REPO_ROOT, run_notebooks
from orchestrator.analysis.stats import MIN_PAIRS, cliffs_delta, holm, paired_comparison
from orchestrator.analysis.tables import (
    MethodRanking,
    compare_architectures,
    compare_families,
    compare_teachers,
    compare_to_ft,
    family_summary,
    rank_methods,
    retention,
    score_vs_params,
    size_key,
    teachers_side_by_side,
)

__all__ = [
    "ARCH_ORDER",
    "COLUMNS",
    "Efficiency",
    "METHOD_ORDER",
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
    "cliffs_delta",
    "compare_architectures",
    "compare_families",
    "compare_teachers",
    "compare_to_ft",
    "default_teacher",
    "efficiency",
    "family_summary",
    "figure2",
    "holm",
    "load_predictions",
    "load_runs",
    "paired_comparison",
    "percent_factor",
    "rank_methods",
    "retention",
    "run_notebooks",
    "score_vs_params",
    "size_key",
    "student_runs",
    "teacher_scores",
    "teachers_side_by_side",
]
