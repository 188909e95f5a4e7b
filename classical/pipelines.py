"""Registry of named classical pipelines (BRIEF §6): one small factory per entry.

`available()` lists the names, `describe()` prints steps, search grid and notes (what
`python -m classical --list` shows), `make(name, seed, n_jobs)` returns a fresh
``(Pipeline, grid, notes)``: the grid is a list of ``step__param`` settings, searched by
`classical.protocol.fit_select` on a validation split carved from train.

Each entry may bring a *sweep*: a way to score its whole grid cheaper than one full fit per
point (the budget: 6 classifiers x 5 cuts of 27k rows in about 10 minutes on 2 cores):
- logreg: one L-BFGS model warm-started along increasing C (Kornblith's 45 values), each point
  fitted to convergence (max_iter 1000; it starts from the previous optimum, so it needs few
  iterations); the sweep stops once `LOGREG_PATIENCE` values in a row bring no better
  validation accuracy after it has left the flat start of the path (past the peak, weaker regularisation only overfits more; unfitted points
  score None). tests/test_classical.py checks it picks the C of the full 45-point sweep on a
  real store.
- random_forest: grid points scored with `RF_SEARCH_TREES`-tree forests, the refit grows 200.
- xgboost: one booster per max_depth, fitted for the largest n_estimators; smaller
  n_estimators are scored by truncating it (`iteration_range`), which is exactly the model
  that fewer rounds would have grown.
- linear_svm, rbf_svm: liblinear/libsvm use one core, so grid points run in parallel processes.
Estimators never open files: I/O stays in `classical.__main__`.
"""
from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

# The logistic-regression C search is the core linear probe's, shared with fine-tuning's k = 0.
from cutpoint.probe import KORNBLITH_C, LOGREG_PATIENCE, sweep_warm_c  # noqa: F401

RF_SEARCH_TREES = 100
CLF = "clf"   # name of the final step: grid keys are "clf__<param>"


# ----------------------------------------------------------------------------- custom estimator

class LabelEncodedClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Fit `estimator` on labels encoded to 0..K-1 and decode its predictions.

    XGBoost refuses non-contiguous labels (e.g. {3, 7, 11}); the fitted `label_encoder_`
    travels with the model, so predictions come back in the original labels.

    Parameters
    ----------
    estimator : classifier, default=None
        The wrapped classifier; None means ``xgboost.XGBClassifier()``.
    """

    def __init__(self, estimator=None):
        self.estimator = estimator

    def _inner(self):
        if self.estimator is not None:
            return self.estimator
        from xgboost import XGBClassifier
        return XGBClassifier()

    def fit(self, X, y):
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.label_encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.label_encoder_.classes_
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in y. "
                             f"Got one class: {self.classes_.tolist()}.")
        self.estimator_ = clone(self._inner()).fit(X, self.label_encoder_.transform(y))
        return self

    @available_if(lambda self: hasattr(self._inner(), "predict_proba"))
    def predict_proba(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return np.asarray(self.estimator_.predict_proba(X))

    def predict(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self.label_encoder_.inverse_transform(
            np.asarray(self.estimator_.predict(X)).astype(np.int64))


# ----------------------------------------------------------------------------- sweeps

def _accuracy(model, X, y) -> float:
    return float(np.mean(model.predict(X) == y))


def _fit_score(est, params, Xf, yf, Xv, yv) -> tuple[float, int]:
    """(validation accuracy, number of ConvergenceWarnings) of one grid point. The warnings are
    counted here because a worker process's warnings never reach the caller."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = clone(est).set_params(**params).fit(Xf, yf)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return _accuracy(model, Xv, yv), sum(issubclass(w.category, ConvergenceWarning)
                                         for w in caught)


def sweep_each(est, Xf, yf, Xv, yv, grid, n_jobs=1, parallel=False) -> list[float]:
    """One fit per grid point; in parallel processes when the estimator uses a single core.
    Points that did not converge re-raise one ConvergenceWarning here, for the caller to note."""
    if parallel and n_jobs > 1 and len(grid) > 1:
        from joblib import Parallel, delayed
        out = list(Parallel(n_jobs=min(n_jobs, len(grid)))(
            delayed(_fit_score)(est, p, Xf, yf, Xv, yv) for p in grid))
    else:
        out = [_fit_score(est, p, Xf, yf, Xv, yv) for p in grid]
    for p, (_, n) in zip(grid, out):
        if n:
            warnings.warn(f"{type(est).__name__} {p} did not converge.", ConvergenceWarning,
                          stacklevel=2)
    return [score for score, _ in out]


def sweep_fewer_trees(est, Xf, yf, Xv, yv, grid, n_jobs=1) -> list[float]:
    """Score each forest setting with RF_SEARCH_TREES trees; the refit grows the full forest.
    The ranking of max_features/min_samples_leaf settles long before 200 trees."""
    return sweep_each(clone(est).set_params(n_estimators=RF_SEARCH_TREES), Xf, yf, Xv, yv, grid)


def sweep_boosting_rounds(est, Xf, yf, Xv, yv, grid, n_jobs=1) -> list[float]:
    """One booster per setting of the other parameters, grown to the largest n_estimators;
    fewer rounds are scored by truncation (identical to boosting that many rounds)."""
    key = "estimator__n_estimators"
    groups: dict = {}
    for i, p in enumerate(grid):
        other = tuple(sorted((k, v) for k, v in p.items() if k != key))
        groups.setdefault(other, []).append(i)
    scores = [0.0] * len(grid)
    for other, idx in groups.items():
        rounds = max(grid[i][key] for i in idx)
        model = clone(est).set_params(**dict(other), **{key: rounds}).fit(Xf, yf)
        for i in idx:
            proba = model.estimator_.predict_proba(Xv, iteration_range=(0, grid[i][key]))
            scores[i] = float(np.mean(model.classes_[np.argmax(proba, axis=1)] == yv))
    return scores


# ----------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class Entry:
    """A registry entry: the final estimator's factory, its grid and how to search it."""
    name: str
    build: Callable[[int, int], BaseEstimator]     # (seed, n_jobs) -> unfitted classifier
    grid: Callable[[int | None], list[dict]]        # n_features -> [{param: value}] (no prefix)
    grid_text: str
    notes: str
    scale: bool = True
    sweep: Callable | None = None
    parallel_grid: bool = False                     # single-core estimator: parallel grid points
    max_train_key: str | None = None                # fit_select keyword capping the train rows


def _logreg(seed, n_jobs):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(solver="lbfgs", max_iter=1000, random_state=seed)


def _linear_svm(seed, n_jobs):
    from sklearn.svm import LinearSVC
    # tol 1e-3: the primal (n > d) solver reaches the validation accuracy of 1e-4 in a
    # fraction of the iterations on 27k x 784 pixels (26 s vs 230 s at C = 1).
    return LinearSVC(dual="auto", tol=1e-3, max_iter=2000, random_state=seed)


def _rbf_svm(seed, n_jobs):
    from sklearn.svm import SVC
    return SVC(kernel="rbf", cache_size=1000, random_state=seed)  # no probabilities


def _random_forest(seed, n_jobs):
    from sklearn.ensemble import RandomForestClassifier
    return RandomForestClassifier(n_estimators=200, n_jobs=n_jobs, random_state=seed)


def _xgboost(seed, n_jobs):
    from xgboost import XGBClassifier
    # max_bin 64 (default 256): 3x faster histograms on 784 pixel columns, same accuracy.
    return LabelEncodedClassifier(XGBClassifier(
        tree_method="hist", max_bin=64, learning_rate=0.3, n_estimators=200, n_jobs=n_jobs,
        random_state=seed, verbosity=0))


def _knn(seed, n_jobs):
    from sklearn.neighbors import KNeighborsClassifier
    return KNeighborsClassifier(n_jobs=n_jobs)


def _rbf_grid(n_features):
    # On standardised features gamma = 1/d is sklearn's "scale"; search around it.
    if not n_features:
        return [{"C": c, "gamma": "scale"} for c in (1.0, 10.0)]
    return [{"C": c, "gamma": float(f"{g / n_features:.6g}")}   # rounded: readable best_params
            for c in (1.0, 10.0) for g in (0.3, 1.0, 3.0)]


_REGISTRY: dict[str, Entry] = {e.name: e for e in [
    Entry("logreg", _logreg,
          lambda d: [{"C": c} for c in KORNBLITH_C],
          "C in np.logspace(-6, 5, 45) (Kornblith et al. 2019)",
          "L-BFGS, multinomial softmax. C swept in increasing order with warm starts, each "
          f"value fitted to convergence (max_iter 1000), stopped after {LOGREG_PATIENCE} values "
          "without a better validation accuracy; refit at the best C on train + val.",
          sweep=sweep_warm_c),
    Entry("linear_svm", _linear_svm,
          lambda d: [{"C": c} for c in (0.001, 0.01, 0.1)],
          "C in {0.001, 0.01, 0.1}",
          "LinearSVC (squared hinge, one-vs-rest, primal when n > d, tol 1e-3). No "
          "probabilities: log_loss is blank. Grid points fitted in parallel (liblinear uses "
          "one core).",
          parallel_grid=True),
    Entry("rbf_svm", _rbf_svm, _rbf_grid,
          "C in {1, 10} x gamma in {0.3, 1, 3} / n_features (1/n_features = 'scale')",
          "SVC with an RBF kernel, probability=False (no log_loss). Fitting is quadratic in the "
          "rows: above classical.rbf_max_train train rows it is fitted on a stratified seeded "
          "subset (stated in the run's notes). Grid points fitted in parallel (libsvm uses one "
          "core).",
          parallel_grid=True, max_train_key="rbf_max_train"),
    Entry("random_forest", _random_forest,
          lambda d: [{"max_features": "sqrt", "min_samples_leaf": 1},
                     {"max_features": "sqrt", "min_samples_leaf": 4},
                     {"max_features": "log2", "min_samples_leaf": 1}],
          "(max_features, min_samples_leaf) in {(sqrt, 1), (sqrt, 4), (log2, 1)}",
          f"200 trees, unscaled input (trees are invariant to scaling). Grid points scored "
          f"with {RF_SEARCH_TREES}-tree forests; the refit grows all 200.",
          scale=False, sweep=sweep_fewer_trees),
    Entry("xgboost", _xgboost,
          lambda d: [{"estimator__max_depth": 6, "estimator__n_estimators": n}
                     for n in (50, 100, 200)],
          "n_estimators in {50, 100, 200} (max_depth 6, learning_rate 0.3)",
          "XGBClassifier(tree_method='hist', max_bin=64) on labels encoded to 0..K-1 "
          "(LabelEncodedClassifier; its label_encoder_ is saved with the model). One booster "
          "grown to 200 rounds scores every n_estimators by truncation.",
          scale=False, sweep=sweep_boosting_rounds),
    Entry("knn", _knn,
          lambda d: [{"n_neighbors": k} for k in (1, 5, 15)],
          "n_neighbors in {1, 5, 15}",
          "k-nearest neighbours (Euclidean, uniform weights) on standardised features."),
]}


# The setting fitted when no validation is possible (one label per class), declared before any
# data is seen: the library defaults, except kNN, which can only use its one nearest neighbour.
FALLBACK = {"logreg": {"C": 1.0}, "linear_svm": {"C": 0.01}, "rbf_svm": {"C": 1.0},
            "random_forest": {"max_features": "sqrt", "min_samples_leaf": 1},
            "xgboost": {"estimator__max_depth": 6, "estimator__n_estimators": 100},
            "knn": {"n_neighbors": 1}}


def available() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> Entry:
    """The registry entry of `name`; an unknown name lists the valid ones and a close match."""
    if not isinstance(name, str) or name not in _REGISTRY:
        match = difflib.get_close_matches(str(name), available(), n=1)
        hint = f" Did you mean '{match[0]}'?" if match else ""
        raise ValueError(f"Unknown classifier {name!r}. Available: {', '.join(available())}."
                         f"{hint} (`python -m classical --list` describes them.)")
    return _REGISTRY[name]


def _check_int(what, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"The '{what}' parameter must be an integer >= {minimum}. "
                         f"Got {value!r} instead.")
    return int(value)


def make(name: str, seed: int = 0, n_jobs: int = 1, *, pca: int | None = None,
         n_features: int | None = None):
    """A fresh, unfitted ``(Pipeline, grid, notes)`` for registry entry `name`.

    Steps: optional StandardScaler ("scale"), optional PCA with `pca` components ("pca", on
    standardised input), the classifier ("clf"). `grid` lists ``clf__param`` settings;
    `n_features` (the input width, or `pca`) sets width-relative values such as RBF gamma.
    """
    entry = get(name)
    seed = _check_int("seed", seed, 0)
    n_jobs = _check_int("n_jobs", n_jobs, 1)
    steps, notes = [], [entry.notes]
    if entry.scale or pca:
        steps.append(("scale", StandardScaler()))
    if pca:
        from sklearn.decomposition import PCA
        pca = _check_int("pca", pca, 1)
        steps.append(("pca", PCA(n_components=pca, random_state=seed)))
        notes.append(f"PCA to {pca} components on standardised input.")
        n_features = pca
    steps.append((CLF, entry.build(seed, n_jobs)))
    grid = [{f"{CLF}__{k}": v for k, v in p.items()} for p in entry.grid(n_features)]
    return Pipeline(steps), grid, " ".join(notes)


def describe(names=None) -> str:
    """Human-readable registry: name, steps, search grid, notes (for `--list`)."""
    blocks = []
    for name in names or available():
        entry = get(name)
        pipe, _, _ = make(name)
        steps = " -> ".join(type(s).__name__ if n != CLF or not isinstance(
            s, LabelEncodedClassifier) else f"LabelEncodedClassifier({type(s.estimator).__name__})"
            for n, s in pipe.steps)
        blocks.append(f"{name}\n  steps: {steps}\n  grid:  {entry.grid_text}\n"
                      f"  notes: {entry.notes}")
    return "\n".join(blocks)


def signature(name: str) -> str:
    """What defines an entry's runs (steps, parameters, grid text): part of every run id, so
    changing a factory or a grid re-runs it instead of reusing an old result."""
    entry = get(name)
    pipe, _, notes = make(name)
    return f"{name}|{pipe!r}|{entry.grid_text}|{notes}"
