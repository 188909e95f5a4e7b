"""The report's inputs: files the other stages left in the run folder — each run's test
predictions (.npz), the class names (from the embedding store) and the dataset's images for the
galleries."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cutpoint import runfolder as rf


@dataclass
class Predictions:
    ids: np.ndarray          # str
    y_true: np.ndarray       # int labels (indices into the class names)
    y_pred: np.ndarray
    proba: np.ndarray | None  # (n, K) columns in `labels` order, or None
    labels: np.ndarray       # label of each proba column

    def confidence(self):
        """Probability given to the predicted class, and the top-1 minus top-2 margin."""
        col = {int(v): j for j, v in enumerate(self.labels)}
        j = np.array([col.get(int(p), -1) for p in self.y_pred])
        p_pred = np.where(j >= 0, self.proba[np.arange(len(j)), np.maximum(j, 0)], np.nan)
        top = np.sort(self.proba, axis=1)
        margin = top[:, -1] - (top[:, -2] if top.shape[1] > 1 else 0)
        return p_pred, margin


def load_predictions(run_dir, row, class_names=()) -> Predictions | None:
    """A row's saved test predictions, or None when it has none / the file is gone."""
    if not row.get("predictions"):
        return None
    path = Path(run_dir) / row["predictions"]
    if not path.is_file():
        return None
    try:
        z = np.load(path, allow_pickle=False)
        arrays = {k: z[k] for k in z.files}
    except ValueError:  # object arrays (ids saved from a list of str): our own file, so allowed
        z = np.load(path, allow_pickle=True)
        arrays = {k: z[k] for k in z.files}
    proba = arrays.get("proba")
    if proba is not None and proba.ndim == 2 and proba.shape[1]:
        proba = proba.astype(np.float64)
    else:
        proba = None  # (n, 0): the model gives no probabilities (e.g. a linear SVM)
    classes = np.asarray(arrays.get("classes", []))
    names = list(class_names)
    if proba is None:
        labels = np.asarray(classes if classes.dtype.kind in "iu" else [], dtype=int)
    elif classes.dtype.kind in "iu" and len(classes) == proba.shape[1]:
        labels = classes.astype(int)
    elif len(classes) == proba.shape[1] and names and all(str(c) in names for c in classes):
        labels = np.array([names.index(str(c)) for c in classes])
    else:
        labels = np.arange(proba.shape[1])
    return Predictions(np.asarray(arrays["ids"]).astype(str),
                       np.asarray(arrays["y_true"]).astype(int),
                       np.asarray(arrays["y_pred"]).astype(int), proba, labels)


def class_names_of(run_dir, rows) -> list:
    """Class names from the embedding store, else from a predictions file, else none."""
    path = Path(run_dir) / rf.EMBEDDINGS
    if path.is_file():
        try:
            from embeddings import store
            return store.class_names(path)
        except (ValueError, OSError):
            pass
    for r in rows:
        p = Path(run_dir) / (r.get("predictions") or "-")
        if p.is_file():
            with np.load(p, allow_pickle=True) as z:
                if "classes" in z.files and z["classes"].dtype.kind in "UO":
                    return [str(c) for c in z["classes"]]
    return []


def dataset_images(cfg) -> Callable:
    """`images_for_ids` backed by the configured dataset (raises if it cannot be loaded)."""
    from cutpoint.splits import prepare   # loads the dataset: only when galleries are drawn
    target = prepare(cfg)["target"]
    pos = {str(i): k for k, i in enumerate(target.ids)}

    def images_for_ids(ids):
        missing = [i for i in ids if str(i) not in pos]
        if missing:
            raise KeyError(f"{len(missing)} ids (e.g. {missing[0]!r}) are not in the dataset.")
        return target.images(np.array([pos[str(i)] for i in ids]))
    return images_for_ids
