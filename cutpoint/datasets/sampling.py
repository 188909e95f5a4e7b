"""Seeded, stratified draws of rows from a label array: the validation carve, label budgets and
row limits. No `Dataset`, no config: `cutpoint.splits` builds the experiment's views with them,
and the `digits` loader its fixed test split.

Pure, seeded functions of (labels, idx): `labels` is a dataset's full label array, `idx` the rows
to work on; they return sorted int64 row indices. Every random choice is made per class with its
own generator seeded by (seed, purpose, class id), so the rows drawn for one class do not change
when other classes are added or removed, and label budgets are nested (the 5 rows kept per class
are among the 10 kept with the same seed). Rounding: a class of n rows gives
round(fraction·n) validation rows, at least 1 and at most n − 1.
"""
from __future__ import annotations

import warnings

import numpy as np

from cutpoint.datasets.errors import DatasetError, DatasetWarning

__all__ = ["carve_validation", "label_budget", "budget_subset", "stratified_limit", "check_seed"]

_SALT = {"val": 1, "budget": 2, "limit": 3, "test": 4}


def check_seed(seed) -> int:
    """`seed` as an int; anything but a non-negative integer is refused."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"The seed must be a non-negative integer; got {seed!r}.")
    return int(seed)


def _rng(seed: int, purpose: str, cls: int) -> np.random.Generator:
    return np.random.default_rng([check_seed(seed), _SALT[purpose], int(cls)])


def _rows(labels, idx) -> tuple[np.ndarray, np.ndarray]:
    """Validate (labels, idx) → (int64 labels, sorted unique int64 idx)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise DatasetError(f"labels must be a 1-D integer array; got shape {labels.shape}, "
                           f"dtype {labels.dtype}.")
    idx = np.asarray(idx)
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise DatasetError(f"idx must hold integer row indices; got dtype {idx.dtype}.")
    idx = idx.astype(np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= len(labels)):
        raise DatasetError(f"idx must lie in 0..{len(labels) - 1}; got {idx.min()}..{idx.max()}.")
    uniq = np.unique(idx)
    if len(uniq) != len(idx):
        raise DatasetError(f"idx holds {len(idx) - len(uniq)} repeated row(s); pass each row once.")
    return labels.astype(np.int64), uniq


def _by_class(labels, idx):
    """Yield (class id, its rows in idx, sorted)."""
    lab = labels[idx]
    for c in np.unique(lab):
        yield int(c), idx[lab == c]



def carve_validation(labels, idx, fraction, seed) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split of `idx` into (train, val): disjoint, union = idx.

    Each class of n rows gives round(fraction·n) rows to val, clipped to 1..n-1, so every class
    is present on both sides; a class with fewer than 2 rows is an error.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) \
            or not 0 < fraction < 1:
        raise DatasetError(f"The validation fraction must be a number in (0, 1), e.g. 0.1; got "
                           f"{fraction!r}.")
    labels, idx = _rows(labels, idx)
    train, val = [], []
    for c, rows in _by_class(labels, idx):
        if len(rows) < 2:
            raise DatasetError(
                f"Class {c} has only {len(rows)} row in the split being carved: a stratified "
                f"validation split needs at least 2 per class. Raise labels_per_class/limit, or "
                f"drop that class.")
        n_val = int(np.clip(np.floor(fraction * len(rows) + 0.5), 1, len(rows) - 1))
        perm = _rng(seed, "val", c).permutation(rows)
        val.append(perm[:n_val])
        train.append(perm[n_val:])
    return _sorted_cat(train), _sorted_cat(val)


def _sorted_cat(parts) -> np.ndarray:
    return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)


def label_budget(labels, idx, per_class, seed) -> np.ndarray:
    """At most `per_class` rows of each class of `idx` (seeded, nested across budgets).

    A class with fewer rows than asked keeps all of them, with a `DatasetWarning` naming it:
    the budget is a ceiling, and failing would make small classes unusable.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise DatasetError(f"labels per class must be a positive integer; got {per_class!r}.")
    labels, idx = _rows(labels, idx)
    keep, short = [], []
    for c, rows in _by_class(labels, idx):
        if len(rows) < per_class:
            short.append(f"{c} ({len(rows)})")
        keep.append(_rng(seed, "budget", c).permutation(rows)[:per_class])
    if short:
        warnings.warn(f"label budget {per_class} per class: class(es) {', '.join(short)} have "
                      f"fewer rows; all of them are kept.", DatasetWarning, stacklevel=2)
    return _sorted_cat(keep)


def budget_subset(labels, idx, per_class, seed, class_names=None) -> np.ndarray:
    """Exactly `per_class` rows of every class of `idx` (seeded; nested across budgets for the
    same seed: the 5 rows drawn per class are among the 20). A class with fewer rows is
    refused, naming it: a label-efficiency curve needs the same budget for every class."""
    labels, idx = _rows(labels, idx)
    for c, rows in _by_class(labels, idx):
        if len(rows) < per_class:
            name = f" ({class_names[c]})" if class_names is not None and c < len(class_names) \
                else ""
            raise DatasetError(
                f"Budget {per_class} labels per class: class {c}{name} has only {len(rows)} "
                f"training rows. Use budgets up to {len(rows)} (e.g. make curve "
                f"BUDGETS=1,5,{len(rows)}), or drop that class from dataset.target_classes.")
    return label_budget(labels, idx, per_class, seed)


def _allocate(counts: np.ndarray, n: int) -> np.ndarray:
    """Split n rows over classes proportionally to counts (largest remainder), ≥1 per class
    when n allows it, never more than a class has."""
    quota = counts * (n / counts.sum())
    alloc = np.minimum(np.floor(quota).astype(np.int64), counts)
    if n >= len(counts):
        alloc = np.maximum(alloc, 1)
    while alloc.sum() < n:  # give a row to the class furthest below its quota
        gap = np.where(alloc < counts, quota - alloc, -np.inf)
        alloc[np.argmax(gap)] += 1
    while alloc.sum() > n:  # take one from the class furthest above its quota
        floor = 1 if n >= len(counts) else 0
        excess = np.where(alloc > floor, alloc - quota, -np.inf)
        alloc[np.argmax(excess)] -= 1
    return alloc


def stratified_limit(labels, idx, n, seed) -> np.ndarray:
    """Keep n rows of `idx` (all if it has fewer) with the class proportions preserved
    (largest-remainder rounding, at least one row per class when n ≥ the number of classes)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DatasetError(f"The row limit must be a positive integer; got {n!r}.")
    labels, idx = _rows(labels, idx)
    if n >= len(idx):
        return idx
    groups = list(_by_class(labels, idx))
    if n < len(groups):
        warnings.warn(f"limit {n} is below the number of classes ({len(groups)}): some classes "
                      f"get no row.", DatasetWarning, stacklevel=2)
    alloc = _allocate(np.array([len(r) for _, r in groups]), int(n))
    keep = [_rng(seed, "limit", c).permutation(rows)[:k] for (c, rows), k in zip(groups, alloc)]
    return np.sort(np.concatenate(keep))
