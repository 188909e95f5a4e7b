"""Metrics shared by the classical, finetune and report stages (BRIEF §8).

`classification_metrics` scores one set of test predictions: accuracy with a seeded percentile
bootstrap 95 % CI, macro-F1, per-class F1, log-loss when probabilities exist, and the confusion
matrix. `mcnemar` compares two methods on the same test samples (paired), which is what the
report needs to say whether the best methods really differ.
"""
from __future__ import annotations

import numpy as np

# Bootstrap draws are made in blocks of at most this many indices, so memory stays bounded
# (1000 draws × 70k test rows would otherwise be a 560 MB index matrix).
_BOOT_BLOCK = 4_000_000
# Below this many discordant pairs the chi-square approximation is poor: use the exact test.
_EXACT_BELOW = 25


def bootstrap_accuracy_ci(correct, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
    """Percentile bootstrap CI of the mean of a 0/1 vector (vectorised, seeded)."""
    correct = np.asarray(correct, dtype=np.float64).ravel()
    n = len(correct)
    if n == 0:
        raise ValueError("Cannot bootstrap an accuracy from 0 samples. Got an empty prediction "
                         "set.")
    if n_boot <= 0:
        acc = float(correct.mean())
        return acc, acc
    rng = np.random.default_rng(seed)
    per_block = max(1, _BOOT_BLOCK // n)
    means = []
    for start in range(0, n_boot, per_block):
        k = min(per_block, n_boot - start)
        idx = rng.integers(0, n, size=(k, n))
        means.append(correct[idx].mean(axis=1))
    means = np.concatenate(means)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _names(labels, class_names):
    if class_names is None:
        return [str(c) for c in labels]
    if isinstance(class_names, dict):
        return [str(class_names.get(c, c)) for c in labels]
    class_names = list(class_names)
    if len(class_names) != len(labels):
        raise ValueError(f"class_names must name each of the {len(labels)} labels {list(labels)}. "
                         f"Got {len(class_names)} names: {class_names}.")
    return [str(c) for c in class_names]


def classification_metrics(y_true, y_pred, proba=None, labels=None, class_names=None,
                           n_boot: int = 1000, seed: int = 0) -> dict:
    """Accuracy (+ 95 % bootstrap CI), macro-F1, per-class F1, log-loss, confusion matrix.

    `labels` fixes the class order (rows/columns of the confusion matrix, columns of `proba`);
    by default the sorted union of `y_true` and `y_pred`. `class_names` is aligned with `labels`
    (a list) or maps label → name (a dict). `proba` is (n, len(labels)) or None/empty; log_loss
    is None without it.
    """
    from sklearn.metrics import confusion_matrix, f1_score, log_loss

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D arrays of equal length. Got shapes "
                         f"{y_true.shape} and {y_pred.shape}.")
    labels = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)
    names = _names(labels, class_names)
    correct = y_true == y_pred
    low, high = bootstrap_accuracy_ci(correct, n_boot=n_boot, seed=seed)
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    out = {
        "accuracy": float(correct.mean()),
        "acc_ci_low": low,
        "acc_ci_high": high,
        "macro_f1": float(per_class.mean()),
        "per_class_f1": {n: float(f) for n, f in zip(names, per_class)},
        "log_loss": None,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "labels": labels.tolist(),
        "class_names": names,
        "n": int(len(y_true)),
    }
    if proba is not None and np.size(proba):
        proba = np.asarray(proba, dtype=np.float64)
        if proba.shape != (len(y_true), len(labels)):
            raise ValueError(f"proba must have shape (n_samples, n_labels) = "
                             f"({len(y_true)}, {len(labels)}). Got {proba.shape}.")
        out["log_loss"] = float(log_loss(y_true, proba, labels=labels))
    return out


def mcnemar(y_true, pred_a, pred_b) -> dict:
    """Paired McNemar test of two classifiers on the same samples (statsmodels).

    b = samples A gets right and B gets wrong, c = the reverse. With fewer than 25 discordant
    pairs the exact two-sided binomial test (statistic = min(b, c)) is used; otherwise the
    chi-square statistic with continuity correction, (|b - c| - 1)² / (b + c), on 1 dof.
    """
    from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

    y_true, pred_a, pred_b = (np.asarray(a) for a in (y_true, pred_a, pred_b))
    if not (y_true.shape == pred_a.shape == pred_b.shape) or y_true.ndim != 1:
        raise ValueError(f"y_true, pred_a and pred_b must be 1-D arrays of equal length. Got "
                         f"shapes {y_true.shape}, {pred_a.shape}, {pred_b.shape}.")
    a_ok, b_ok = pred_a == y_true, pred_b == y_true
    b = int(np.sum(a_ok & ~b_ok))
    c = int(np.sum(~a_ok & b_ok))
    if b + c == 0:
        return {"b": b, "c": c, "statistic": 0.0, "p_value": 1.0, "method": "exact"}
    exact = b + c < _EXACT_BELOW
    res = sm_mcnemar([[0, b], [c, 0]], exact=exact, correction=True)
    return {"b": b, "c": c, "statistic": float(res.statistic),
            "p_value": float(min(1.0, res.pvalue)), "method": "exact" if exact else "chi2-cc"}


def holm(p_values, alpha: float = 0.05) -> tuple[list[float], list[bool]]:
    """Holm-adjusted p-values and rejections for a family of tests (statsmodels)."""
    from statsmodels.stats.multitest import multipletests

    if not len(p_values):
        return [], []
    reject, adjusted, _, _ = multipletests(list(p_values), alpha=alpha, method="holm")
    return [float(p) for p in adjusted], [bool(r) for r in reject]
