"""The experiment's rows (class halves, limits, label budgets, validation carve): `prepare(cfg)`.

The row draws themselves are pure, seeded functions of a label array, in
`cutpoint.datasets.sampling` (`carve_validation`, `label_budget`, `budget_subset`,
`stratified_limit`; re-exported here): per class, with a generator seeded by (seed, purpose,
class id), nested across budgets. This module builds the experiment's views with them.

`prepare(cfg)` is the one place that turns the resolved config into the experiment's rows, so
every stage (extract, classical, finetune, report) works on the same ones:
  1. load dataset.name from dataset.path;
  2. if the dataset has no 'test' rows (an image folder without split info), carve a fixed
     stratified 20 % test split (seed 0, independent of experiment.seed: the test set must not
     move between seeds);
  3. per view (source = half A, target = half B): keep its classes, then per split at most
     `limit` rows (stratified; the test rows are drawn with a fixed seed, so they do not move
     between seeds), then on target's train split at most `labels_per_class` rows per class;
     relabel the classes 0..len-1 in the configured order;
  4. carve the validation split (`val_fraction`, stratified, seeded) from each view's train rows
     and write it INTO the view: `view.split` is 'train' / 'val' / 'test', rows ordered so.

This is the only place a validation split is carved for an experiment: the stages read
`view.split` (self-training, fine-tuning) or the store's split column (classical, UMAP, report),
never carve their own. `prepare(cfg, run_dir=…)` records the assignment in
`<run_dir>/splits.npz` the first time and, on every later call, checks that it reproduces the
recorded one exactly, so two stages cannot silently work on different rows.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from cutpoint.datasets import Dataset, DatasetError, DatasetWarning, check_classes, load
from cutpoint.datasets.sampling import (budget_subset, carve_validation, check_seed, label_budget,
                                        stratified_limit)
from cutpoint import runfolder as rf
from cutpoint.provenance import hash_arrays, hash_obj

__all__ = ["class_subset", "carve_validation", "label_budget", "stratified_limit",
           "describe_split", "order_by_split", "train_val_test", "prepare", "SPLIT_ORDER",
           "SPLITS_FILE", "record_splits", "split_def_hash", "budget_subset"]

SPLIT_ORDER = ("train", "val", "test")
SPLITS_FILE = rf.SPLITS

TEST_CARVE_FRACTION, TEST_CARVE_SEED = 0.2, 0


def class_subset(ds: Dataset, classes) -> Dataset:
    """A view with only `classes` (class ids of `ds`), relabelled 0..len-1 in the given order;
    class names follow. Unknown or repeated ids are an error."""
    classes = check_classes(ds, classes)
    if not classes:
        raise DatasetError("class_subset() needs at least one class id.")
    return ds.subset(np.flatnonzero(np.isin(ds.labels, classes)), relabel_classes=classes)


def order_by_split(ds: Dataset, order=("train", "test")) -> np.ndarray:
    """Row indices with each split contiguous, in `order` (other splits after, by name); rows
    keep their relative order inside a split. The HDF5 store needs contiguous splits."""
    names = list(order) + sorted(set(np.unique(ds.split).tolist()) - set(order))
    parts = [np.flatnonzero(ds.split == s) for s in names]
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)


def train_val_test(ds: Dataset, val_fraction, seed) -> dict[str, np.ndarray]:
    """{'train', 'val', 'test'} row indices of `ds`: val carved from the dataset's train split
    (a view made by `prepare` already has its 'val' rows: they are returned as they are)."""
    if (ds.split == "val").any():
        return {s: np.flatnonzero(ds.split == s) for s in SPLIT_ORDER}
    train, val = carve_validation(ds.labels, np.flatnonzero(ds.split == "train"), val_fraction,
                                  seed)
    return {"train": train, "val": val, "test": np.flatnonzero(ds.split == "test")}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def describe_split(ds: Dataset, *, seed, val_fraction=None, labels_per_class=0, limit=0,
                   splits: dict | None = None, **extra) -> dict:
    """JSON-able record of how `ds`'s rows were chosen: dataset, classes (original ids and
    names), fractions, budget, limit, seed, sizes and per-class counts per split (with `splits`
    from `train_val_test`: train/val/test, else the dataset's own splits), and a hash of the
    sample ids in row order so a later stage can check it sees the same rows."""
    if splits is None:
        splits = {s: np.flatnonzero(ds.split == s) for s in np.unique(ds.split)}
    k = len(ds.class_names)
    record = {
        "dataset": ds.name,
        "classes": list(ds.class_ids),
        "class_names": list(ds.class_names),
        "seed": seed,
        "val_fraction": val_fraction,
        "labels_per_class": labels_per_class,
        "limit": limit,
        "n_rows": len(ds),
        "sizes": {s: len(i) for s, i in splits.items()},
        "class_counts": {s: np.bincount(ds.labels[i], minlength=k) for s, i in splits.items()},
        "ids_sha256": hash_arrays(ds.ids),
        **extra,
    }
    return _jsonable(record)


def _cfg_int(d: dict, key: str, minimum: int = 0) -> int:
    v = d.get(key, 0)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise DatasetError(f"The 'dataset.{key}' setting must be an integer ≥ {minimum}; "
                           f"got {v!r}.")
    return int(v)


def prepare(cfg: dict, dataset: Dataset | None = None, run_dir=None) -> dict:
    """The experiment's rows from a resolved config (see the module docstring).

    Returns {"source": Dataset or None (when dataset.source_classes == []), "target": Dataset,
    "split_def": JSON-able dict, "splits": {"source": {...} or None, "target": {train, val,
    test}}} where the views are relabelled, their `split` is 'train'/'val'/'test' (rows in that
    order), and `splits` holds each view's row indices. Pass `dataset` to reuse an already
    loaded one, `run_dir` to record / check the assignment in `<run_dir>/splits.npz`.
    """
    d, seed = cfg["dataset"], check_seed(cfg["experiment"]["seed"])
    limit, budget = _cfg_int(d, "limit"), _cfg_int(d, "labels_per_class")
    val_fraction = d.get("val_fraction", 0.1)
    ds = dataset if dataset is not None else load(d["name"], d.get("path", ""))

    split = ds.split
    test_carved = None
    if not (split == "test").any():
        _, test = carve_validation(ds.labels, np.arange(len(ds)), TEST_CARVE_FRACTION,
                                   TEST_CARVE_SEED)
        split = split.copy()
        split[test] = "test"
        test_carved = {"fraction": TEST_CARVE_FRACTION, "seed": TEST_CARVE_SEED,
                       "reason": "the dataset has no test split"}
        warnings.warn(f"{ds.name}: no test split; carved a stratified {TEST_CARVE_FRACTION:.0%} "
                      f"test split (seed {TEST_CARVE_SEED}).", DatasetWarning, stacklevel=2)

    roles = {"source": list(d.get("source_classes", [])),
             "target": list(d.get("target_classes", [])) or list(range(len(ds.class_names)))}
    for role, classes in roles.items():
        try:
            check_classes(ds, classes)
        except DatasetError as e:
            raise DatasetError(f"dataset.{role}_classes: {e}") from None
    overlap = sorted(set(roles["source"]) & set(roles["target"]))
    if overlap:
        warnings.warn(f"dataset.source_classes and target_classes share classes {overlap}: the "
                      f"backbone will have seen the target's classes (not Yosinski's A/B "
                      f"protocol).", DatasetWarning, stacklevel=2)

    views, indices, defs = {}, {}, {}
    for role, classes in roles.items():
        if not classes:
            views[role] = indices[role] = defs[role] = None
            continue
        rows = np.flatnonzero(np.isin(ds.labels, classes))
        chosen = []
        for s in np.unique(split[rows]):
            r = rows[split[rows] == s]
            if limit:   # the test rows must not move with the seed
                r = stratified_limit(ds.labels, r, limit, TEST_CARVE_SEED if s == "test" else seed)
            if role == "target" and budget and s == "train":
                r = label_budget(ds.labels, r, budget, seed)
            chosen.append(r)
        rows = np.sort(np.concatenate(chosen))
        view = ds.subset(rows, relabel_classes=classes)
        view.split = split[rows].astype("<U8")
        try:
            carved = train_val_test(view, val_fraction, seed)
        except DatasetError as e:
            raise DatasetError(f"{role} view (classes {classes}): {e}") from None
        view.split[carved["val"]] = "val"
        view = view.subset(order_by_split(view, SPLIT_ORDER))
        indices[role] = {s: np.flatnonzero(view.split == s) for s in SPLIT_ORDER}
        views[role] = view
        defs[role] = describe_split(view, seed=seed, val_fraction=val_fraction,
                                    labels_per_class=budget if role == "target" else 0,
                                    limit=limit, splits=indices[role])
    split_def = _jsonable({
        "dataset": ds.name, "path": str(d.get("path", "")), "seed": seed,
        "val_fraction": val_fraction, "labels_per_class": budget, "limit": limit,
        "test_carved": test_carved, "source": defs["source"], "target": defs["target"],
        "dataset_source": ds.source,
    })
    prepared = {"source": views["source"], "target": views["target"], "split_def": split_def,
                "splits": indices}
    if run_dir is not None:
        record_splits(run_dir, prepared)
    return prepared


def split_def_hash(split_def: dict) -> str:
    """The short id of a split definition (the `split_def` column of results.csv)."""
    return hash_obj(split_def, 12)


def record_splits(run_dir, prepared: dict) -> Path:
    """Write `<run_dir>/splits.npz` (ids and split of every row of each view) the first time;
    afterwards refuse a `prepared` whose rows or splits differ from the recorded ones."""
    path = Path(run_dir) / SPLITS_FILE
    arrays = {}
    for role in ("source", "target"):
        v = prepared[role]
        if v is not None:
            arrays[f"{role}_ids"] = np.asarray(v.ids).astype(str)
            arrays[f"{role}_split"] = np.asarray(v.split).astype(str)
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            old = {k: z[k] for k in z.files if k != "split_def"}
            old_def = str(z["split_def"]) if "split_def" in z.files else "{}"
        same = old.keys() == arrays.keys() and all(np.array_equal(old[k], arrays[k]) for k in old)
        if not same:
            raise DatasetError(
                f"{path} records other rows or splits than this config gives (recorded split "
                f"definition: {old_def[:300]}…). A run folder holds one experiment: use another "
                f"one (make … RUN=runs/<new>) or remove this one with `make clean`.")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, split_def=np.asarray(json.dumps(prepared["split_def"],
                                                             sort_keys=True)), **arrays)
    tmp.replace(path)
    return path
