"""Scores of a classifier's logits: the input checks every task shares and the binary and multiclass metric sets
(``BinaryTask`` and ``MulticlassTask`` in tasks/base.py, and declared tasks, score through these)."""

from __future__ import annotations

import numpy as np


def check_scores(
    name: str, logits: np.ndarray, labels: np.ndarray, num_labels: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(logits as float64 [N, num_labels], labels as int64 [N])``; ValueError naming task ``name`` otherwise."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or logits.shape[1] != num_labels:
        raise ValueError(
            f"{name}.metrics: logits must have shape [N, {num_labels}], got {list(logits.shape)}"
        )
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{name}.metrics: labels must have shape [{logits.shape[0]}] to match the logits, got {list(labels.shape)}"
        )
    if labels.shape[0] == 0:
        raise ValueError(f"{name}.metrics: no samples to score")
    if not np.issubdtype(labels.dtype, np.integer) and not np.issubdtype(labels.dtype, np.bool_):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError(f"{name}.metrics: labels must be class indices, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    bad = labels[(labels < 0) | (labels >= num_labels)]
    if bad.size:
        raise ValueError(f"{name}.metrics: label {int(bad[0])} is outside 0..{num_labels - 1}")
    return logits, labels


def binary_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and F1 of class 1 (checked inputs)."""
    from sklearn.metrics import accuracy_score, f1_score

    preds = logits.argmax(axis=1)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1": float(f1_score(labels, preds, pos_label=1, average="binary", zero_division=0.0)),
    }


def multiclass_metrics(logits: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy, top-3 accuracy and macro F1 (checked inputs).

    Macro F1 averages over the classes present in the labels or the predictions of the scored set (scikit-learn's
    default), so classes absent from both do not count as zeros.
    """
    from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score

    preds = logits.argmax(axis=1)
    k = min(3, num_labels)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "top3_accuracy": float(top_k_accuracy_score(labels, logits, k=k, labels=np.arange(num_labels))),
        "macro_f1": float(f1_score(labels, preds, average="macro", zero_division=0.0)),
    }
