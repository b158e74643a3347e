"""The ``completion`` task: CodeXGLUE line-level code completion on py150 (Python), and its offline proxy.

* ``data``: the pinned data versions (``VERSIONS``, ``codexglue_version``), ``load_split``, ``load_line_test``;
* ``preprocess``: Python source -> CodeXGLUE token text (``<s> ... <EOL> ... </s>`` with literal placeholders);
* ``proxy``: the offline proxy that ``python -m tasks.build_local --tasks completion`` writes;
* ``scorer``: ES/EM exactly as CodeXGLUE's line-level evaluator;
* ``generate``: line completion with an HF causal LM as CodeXGLUE runs it (imports torch; not imported here);
* ``tokenizer``: a small byte-level BPE with CodeXGLUE's special tokens, built offline (tests, the local profile).

``python -m tasks.completion score --answers A --predictions P`` prints ``{"ES": ..., "EM": ...}``.
"""

from __future__ import annotations

from tasks.completion.data import (
    DEFAULT_VERSION,
    SPLITS,
    VERSIONS,
    CompletionDataError,
    DataVersion,
    codexglue_version,
    load_line_test,
    load_split,
)
from tasks.completion.preprocess import preprocess_file, special_tokens
from tasks.completion.scorer import LineScores, post_process, score_lines

__all__ = [
    "DEFAULT_VERSION",
    "SPLITS",
    "VERSIONS",
    "CompletionDataError",
    "DataVersion",
    "LineScores",
    "codexglue_version",
    "load_line_test",
    "load_split",
    "post_process",
    "preprocess_file",
    "score_lines",
    "special_tokens",
]
