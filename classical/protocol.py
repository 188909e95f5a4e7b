"""The honest protocol for classical models on embeddings (BRIEF §6), free of I/O.

`fit_select` chooses hyperparameters on the experiment's validation split (carved once from train
by `cutpoint.splits.prepare` and stored with the embeddings; the fine-tuning stage selects on the
same rows), fits each grid point once, then refits the best setting on train + validation. The
test split is never seen there: `evaluate` scores it once, with `cutpoint.metrics`.
"""
from __future__ import annotations

import contextlib
import contextvars
import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from classical import pipelines
from cutpoint.metrics import classification_metrics
from cutpoint.splits import carve_validation, stratified_limit


# ----------------------------------------------------------------------------- validation

def as_xy(X, y, split: str):
    """(X, y) as arrays, checked: X 2-D, numeric, non-empty and finite; one label per row."""
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"X_{split} must be a 2-D array (samples x features). Got shape "
                         f"{X.shape}.")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"X_{split} must hold numbers. Got dtype {X.dtype}.")
    if y.ndim != 1:
        raise ValueError(f"y_{split} must be a 1-D array of labels. Got shape {y.shape}.")
    if len(X) != len(y):
        raise ValueError(f"X_{split} has {len(X)} rows but y_{split} has {len(y)} labels: they "
                         f"must have one label per row. Check that both come from the same "
                         f"split of the same store.")
    if len(X) == 0:
        raise ValueError(f"The {split} split is empty (0 rows). Check the store's splits.")
    finite = np.isfinite(X)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        bad_cols = np.flatnonzero(~finite.all(axis=0))
        raise ValueError(
            f"X_{split} has {int((~finite).sum())} NaN/inf values in {len(bad_rows)} of "
            f"{len(X)} rows (first rows: {bad_rows[:5].tolist()}; columns: "
            f"{bad_cols[:5].tolist()}{' …' if len(bad_cols) > 5 else ''}). Classical models need "
            f"finite features: check the backbone's input range/preprocessing and re-extract.")
    return X, y


def validate_inputs(X_train, y_train, X_test=None, y_test=None):
    """Refuse inputs a classical model cannot be fitted or scored on, saying how to fix them."""
    X_train, y_train = as_xy(X_train, y_train, "train")
    classes = np.unique(y_train)
    if len(classes) < 2:
        raise ValueError(f"The train split has {len(classes)} class ({classes.tolist()}); a "
                         f"classifier needs at least 2. Check dataset.target_classes.")
    if X_test is None and y_test is None:
        return
    X_test, y_test = as_xy(X_test, y_test, "test")
    if X_test.shape[1] != X_train.shape[1]:
        raise ValueError(f"X_test has {X_test.shape[1]} features but X_train has "
                         f"{X_train.shape[1]}: both must come from the same cut point.")
    missing = np.setdiff1d(np.unique(y_test), classes)
    if len(missing):
        raise ValueError(f"Class(es) {missing.tolist()} appear in the test split but not in "
                         f"train ({classes.tolist()}): no model trained on this split can "
                         f"predict them. Check dataset.labels_per_class/limit, or the splits.")


# ----------------------------------------------------------------------------- fit & select

SELECTION_RULE = ("hyperparameters chosen by validation accuracy on the experiment's val split "
                  "(carved once from train by cutpoint.splits); final fit on train + val; test "
                  "scored once")


def fit_select(name, X_train, y_train, X_val=None, y_val=None, *, val_fraction=0.1, seed=0,
               n_jobs=2, rbf_max_train=10000, pca=None):
    """Choose `name`'s hyperparameters on validation rows, then refit on train + validation.

    The validation rows are `X_val, y_val` when given (the experiment's recorded val split);
    without them a stratified seeded `val_fraction` is carved from the training rows (for
    library use). Test rows never enter. Returns ``(fitted_pipeline, info)``; info has
    best_params, val_scores (one per grid point, in grid order; None = not fitted),
    best_val_accuracy, search/refit/fit seconds, notes, n_train (rows of the final fit), n_fit
    (rows the search fitted on), n_val.
    """
    entry = pipelines.get(name)
    validate_inputs(X_train, y_train)
    X, y = as_xy(X_train, y_train, "train")
    pipe, grid, notes = pipelines.make(name, seed, n_jobs, pca=pca, n_features=X.shape[1])
    notes = [notes]
    if X_val is None:
        _, codes = np.unique(y, return_inverse=True)      # carve needs integer labels
        fit_rows, val_rows = carve_validation(codes, np.arange(len(y)), val_fraction, seed)
        Xv, yv = X[val_rows], y[val_rows]
        X, y = X[fit_rows], y[fit_rows]
    else:
        Xv, yv = as_xy(X_val, y_val, "val")
        if Xv.shape[1] != X.shape[1]:
            raise ValueError(f"X_val has {Xv.shape[1]} features but X_train has {X.shape[1]}: "
                             f"both must come from the same cut point.")
    X_all, y_all = np.concatenate([X, Xv]), np.concatenate([y, yv])
    fit_rows, all_rows = np.arange(len(y)), np.arange(len(y_all))
    limit = {"rbf_max_train": rbf_max_train}.get(entry.max_train_key)
    if limit and len(y_all) > limit:   # the same share of the cap for search and refit
        fit_rows = _stratified(y, max(2, int(limit) * len(y) // len(y_all)), seed)
        all_rows = _stratified(y_all, int(limit), seed)
        notes.append(f"Fitted on a stratified subset of {len(all_rows)} of {len(y_all)} train + "
                     f"val rows (search on {len(fit_rows)} of {len(y)} train rows; "
                     f"classical.rbf_max_train = {limit}: RBF SVC training is quadratic).")

    t0 = time.perf_counter()
    scores, chosen = _grid_scores(entry, pipe, grid, X[fit_rows], y[fit_rows], Xv, yv, n_jobs,
                                  notes)
    grid = [{**p, **c} for p, c in zip(grid, chosen)]
    search_s = time.perf_counter() - t0
    # ties: the first point in grid order (for logreg the smallest C); None = not fitted
    best = int(np.argmax([-np.inf if s is None else s for s in scores]))
    if chosen[best]:
        notes.append("Chosen by the search on validation: " + ", ".join(
            f"{k} = {v}" for k, v in chosen[best].items()) + ".")
    skipped = sum(s is None for s in scores)
    if skipped:
        notes.append(f"{skipped} of {len(grid)} grid points not fitted: the sweep stopped after "
                     f"its validation accuracy stopped improving.")

    t1 = time.perf_counter()
    model = clone(pipe).set_params(**grid[best])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(X_all[all_rows], y_all[all_rows])
    _record_warnings(caught, notes, "final fit")
    refit_s = time.perf_counter() - t1
    info = {
        "best_params": {k: _plain(v) for k, v in grid[best].items()},
        "val_scores": [{"params": {k: _plain(v) for k, v in p.items()}, "val_accuracy": s}
                       for p, s in zip(grid, scores)],
        "best_val_accuracy": float(scores[best]),
        "selection": SELECTION_RULE if X_val is not None else
        f"hyperparameters chosen on a stratified {val_fraction:.0%} of train; final fit on all "
        f"train rows",
        "search_seconds": search_s, "refit_seconds": refit_s, "fit_seconds": search_s + refit_s,
        "notes": " ".join(notes), "n_train": int(len(all_rows)), "n_val": int(len(yv)),
        "n_fit": int(len(fit_rows)), "n_features": int(X.shape[1]),
    }
    return model, info


_SEARCH_ON_DASK = contextvars.ContextVar("search_on_dask", default=False)


@contextlib.contextmanager
def search_on_dask():
    """Inside this block, the grid searches of `fit_select` / `fit_select_cv` run their joblib
    work as Dask tasks (joblib's dask backend; needs a dask.distributed Client in this process).
    The fit and val arrays are scattered to the workers once per search (joblib#1154), not
    shipped with every grid point. Only the search: the final refit stays in this process."""
    token = _SEARCH_ON_DASK.set(True)
    try:
        yield
    finally:
        _SEARCH_ON_DASK.reset(token)


def _search_backend(*arrays):
    if not _SEARCH_ON_DASK.get():
        return contextlib.nullcontext()
    import joblib
    return joblib.parallel_backend("dask", scatter=list(arrays))


def _grid_scores(entry, pipe, grid, Xf, yf, Xv, yv, n_jobs, notes) -> tuple[list, list]:
    """(validation accuracy of every grid point (None = not fitted), the parameters the sweep
    chose for each point ({} if none; e.g. XGBoost's early-stopped rounds, as
    ``clf__param``)): preprocessing fitted on the fit rows only, then the entry's sweep. Grid
    points a tiny fit set cannot support (kNN with more neighbours than rows) score None."""
    pre, clf = pipe[:-1], pipe[-1]
    if len(pre.steps):
        pre = clone(pre).fit(Xf)
        Xf, Xv = pre.transform(Xf), pre.transform(Xv)
    prefix = f"{pipelines.CLF}__"
    clf_grid = [{k[len(prefix):]: v for k, v in p.items()} for p in grid]
    feasible = [i for i, p in enumerate(clf_grid) if p.get("n_neighbors", 0) <= len(yf)]
    with warnings.catch_warnings(record=True) as caught, _search_backend(Xf, yf, Xv, yv):
        warnings.simplefilter("always", ConvergenceWarning)
        sub = [clf_grid[i] for i in feasible]
        if entry.sweep is not None:
            got = entry.sweep(clf, Xf, yf, Xv, yv, sub, n_jobs)
        else:
            # on Dask every grid point is a task (the workers are the parallelism)
            got = pipelines.sweep_each(clf, Xf, yf, Xv, yv, sub, n_jobs,
                                       parallel=entry.parallel_grid or _SEARCH_ON_DASK.get())
    _record_warnings(caught, notes, "grid point(s) of the search")
    scores, chosen = [None] * len(grid), [{} for _ in grid]
    for i, v in zip(feasible, got):
        if isinstance(v, tuple):
            v, extra = v
            chosen[i] = {f"{prefix}{k}": x for k, x in extra.items()}
        scores[i] = v
    return scores, chosen


def fit_select_cv(name, X, y, *, folds=5, seed=0, n_jobs=1):
    """Selection with too few labels for a held-out split: stratified k-fold cross-validation
    inside the training rows (k = min(folds, rows of the smallest class)), the grid point with
    the best mean fold accuracy refitted on all rows. With one row per class no validation is
    possible: the entry's pre-declared `pipelines.FALLBACK` setting is fitted, and
    best_val_accuracy is None. Same return value as `fit_select`."""
    from sklearn.model_selection import StratifiedKFold

    entry = pipelines.get(name)
    validate_inputs(X, y)
    X, y = as_xy(X, y, "train")
    pipe, grid, notes = pipelines.make(name, seed, n_jobs, n_features=X.shape[1])
    notes = [notes]
    k = min(int(folds), int(np.unique(y, return_counts=True)[1].min()))
    t0 = time.perf_counter()
    if k >= 2:
        per_fold, chosen = [], []
        for tr, va in StratifiedKFold(k, shuffle=True, random_state=seed).split(X, y):
            s, c = _grid_scores(entry, pipe, grid, X[tr], y[tr], X[va], y[va], n_jobs, notes)
            per_fold.append(s)
            chosen.append(c)
        scores = [None if any(f[i] is None for f in per_fold)
                  else float(np.mean([f[i] for f in per_fold])) for i in range(len(grid))]
        # parameters a sweep chose per fold (XGBoost's rounds): their median over the folds
        grid = [{**p, **{key: int(np.median([c[i][key] for c in chosen]))
                         for key in chosen[0][i]}} for i, p in enumerate(grid)]
        best = int(np.argmax([-np.inf if s is None else s for s in scores]))
        params, rule = grid[best], (f"hyperparameters chosen by {k}-fold stratified "
                                    f"cross-validation inside the labelled subset; final fit on "
                                    f"the whole subset")
        best_val = scores[best]
    else:
        scores = [None] * len(grid)
        params = {f"{pipelines.CLF}__{key}": v for key, v in pipelines.FALLBACK[name].items()}
        rule, best_val = ("one label per class: no validation possible, the pre-declared "
                          "setting pipelines.FALLBACK is fitted on the subset"), None
    search_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    model = clone(pipe).set_params(**params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(X, y)
    _record_warnings(caught, notes, "final fit")
    refit_s = time.perf_counter() - t1
    return model, {
        "best_params": {key: _plain(v) for key, v in params.items()},
        "val_scores": [{"params": {key: _plain(v) for key, v in p.items()}, "val_accuracy": s}
                       for p, s in zip(grid, scores)],
        "best_val_accuracy": best_val, "selection": rule, "search_seconds": search_s,
        "refit_seconds": refit_s, "fit_seconds": search_s + refit_s, "notes": " ".join(notes),
        "n_train": int(len(y)), "n_val": int(len(y)) if k >= 2 else 0, "n_fit": int(len(y)),
        "n_features": int(X.shape[1]), "folds": k if k >= 2 else 0}


def _stratified(y, n, seed) -> np.ndarray:
    _, codes = np.unique(y, return_inverse=True)
    return stratified_limit(codes, np.arange(len(y)), n, seed)


def _record_warnings(caught, notes: list, where: str) -> None:
    """Convergence warnings become a note on the run (counted, never silenced); others are
    shown as usual."""
    n = 0
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            n += 1
        else:   # not ours to handle
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if n:
        notes.append(f"ConvergenceWarning in {n} {where} (reached max_iter).")


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


# ----------------------------------------------------------------------------- evaluate

def class_names_for(labels, class_names):
    """Names aligned with `labels`: class_names indexed by label (store convention), a dict
    label → name, or a list already aligned with `labels`."""
    if class_names is None:
        return [str(c) for c in labels]
    if isinstance(class_names, dict):
        return [str(class_names.get(c, c)) for c in labels]
    names = list(class_names)
    if np.issubdtype(np.asarray(labels).dtype, np.integer) and len(labels) and \
            labels.min() >= 0 and labels.max() < len(names):
        return [str(names[int(c)]) for c in labels]
    if len(names) == len(labels):
        return [str(n) for n in names]
    raise ValueError(f"class_names must be indexed by label (labels 0..{len(names) - 1}) or "
                     f"aligned with the model's classes {np.asarray(labels).tolist()}. Got "
                     f"{len(names)} names.")


def predict_with_proba(model, X):
    """(pred, proba, seconds); proba is an empty (n, 0) array when the model has none.

    With probabilities, pred = classes_[argmax proba]: how LogisticRegression, RandomForest,
    kNN and XGBoost define predict, without a second pass over X."""
    t0 = time.perf_counter()
    if hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(X), dtype=np.float64)
        proba /= proba.sum(axis=1, keepdims=True)  # float32 rows (XGBoost) drift from 1 by ~1e-7
        pred = np.asarray(model.classes_)[np.argmax(proba, axis=1)]
    else:
        pred = np.asarray(model.predict(X))
        proba = np.empty((len(X), 0), dtype=np.float64)
    return pred, proba, time.perf_counter() - t0


_class_names_for = class_names_for   # the name classical.distributed still uses


def evaluate(model, X_test, y_test, class_names, n_boot=1000, seed=0) -> dict:
    """Score a fitted model on the test split, once: `cutpoint.metrics` plus predictions."""
    X, y = as_xy(X_test, y_test, "test")
    labels = np.asarray(model.classes_)
    missing = np.setdiff1d(np.unique(y), labels)
    if len(missing):
        raise ValueError(f"Class(es) {missing.tolist()} appear in the test split but the model "
                         f"was trained on {labels.tolist()} only.")
    pred, proba, seconds = predict_with_proba(model, X)
    out = classification_metrics(y, pred, proba=proba if proba.size else None, labels=labels,
                                 class_names=class_names_for(labels, class_names),
                                 n_boot=n_boot, seed=seed)
    out.update(y_pred=pred, proba=proba, predict_seconds=seconds, classes=labels)
    return out
