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
- xgboost: early stopping on the validation split chooses n_estimators (up to 200); the
  sweep returns the chosen rounds with the score, and the refit grows that many.
- rbf_svm: the squared distances are computed once by BLAS, each grid point's kernel is their
  exp (KernelRBFSVC fits libsvm on the precomputed kernel: libsvm's own kernel evaluation,
  one dot product per pair, dominated the fit on wide inputs).
- linear_svm: PrimalLinearSVC, LinearSVC's objective by L-BFGS on dense matrix products
  (liblinear had not fitted one C of 27k x 2048 after 6 CPU minutes).
  Both fall back to the libraries' own solvers on narrow inputs, where those are faster.
A sweep returns one score per grid point, or (score, {param: value}) when it also chose
parameters (XGBoost's rounds); those are refitted and recorded with the point.
Estimators never open files: I/O stays in `classical.runner` and `classical.bundle`.
"""
from __future__ import annotations

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
from cutpoint.registry import Registry

RF_SEARCH_TREES = 50
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


# Below these widths the libraries' own solvers are faster (measured on 9k rows: liblinear
# 0.27 vs 0.87 CPU s at 32 features, 2.4 vs 1.6 at 128, 9.9 vs 4.0 at 512; libsvm's kernel
# 1.4 vs 2.5 s at 32, 3.3 vs 2.8 at 256, 8.1 vs 3.3 at 512); above them the matrix-product
# paths win, by more as the width grows.
LBFGS_MIN_FEATURES = 128
PRECOMPUTE_MIN_FEATURES = 256


class PrimalLinearSVC(ClassifierMixin, BaseEstimator):
    """LinearSVC's model (squared hinge, L2, one-vs-rest, the intercept a regularised feature of
    value 1, as liblinear fits it), solved in the primal with L-BFGS on dense matrix products
    when the input is wide.

    liblinear walks a sparse copy of the rows one class at a time: on 27k x 2048 standardised
    features it had not finished one C after 6 CPU minutes; L-BFGS shares each X @ W product
    between all classes (BLAS, all cores). On narrow inputs liblinear's Newton solver is faster.

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularisation strength (the loss of each row is weighted by C).
    tol : float, default=1e-3
        L-BFGS stops when the gradient's largest entry is below tol x its value at w = 0
        (liblinear: its own criterion at this tol).
    max_iter : int, default=1000
        Solver iterations; reaching it raises a ConvergenceWarning.
    solver : {"auto", "lbfgs", "liblinear"}, default="auto"
        "auto": L-BFGS from LBFGS_MIN_FEATURES features, liblinear (primal) below.
    """

    def __init__(self, C=1.0, tol=1e-3, max_iter=1000, solver="auto"):
        self.C = C
        self.tol = tol
        self.max_iter = max_iter
        self.solver = solver

    def fit(self, X, y):
        from scipy.optimize import minimize

        X, y = validate_data(self, X, y, dtype=np.float64, order="C")
        check_classification_targets(y)
        if not (isinstance(self.C, (int, float, np.number)) and self.C > 0):
            raise ValueError(f"The 'C' parameter of {type(self).__name__} must be a float > 0. "
                             f"Got {self.C!r} instead.")
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in y. "
                             f"Got one class: {self.classes_.tolist()}.")
        if self.solver not in ("auto", "lbfgs", "liblinear"):
            raise ValueError(f"The 'solver' parameter of {type(self).__name__} must be 'auto', "
                             f"'lbfgs' or 'liblinear'. Got {self.solver!r} instead.")
        if self.solver == "liblinear" or (self.solver == "auto"
                                          and X.shape[1] < LBFGS_MIN_FEATURES):
            from sklearn.svm import LinearSVC
            ref = LinearSVC(C=self.C, dual=False, tol=self.tol, max_iter=self.max_iter).fit(X, y)
            self.coef_, self.intercept_ = ref.coef_, ref.intercept_
            self.n_iter_, self.solver_ = int(ref.n_iter_), "liblinear"
            return self
        pos = [1] if len(self.classes_) == 2 else range(len(self.classes_))  # binary: one model
        T = np.where(codes[:, None] == np.asarray(pos)[None, :], 1.0, -1.0)   # (n, K) in +-1
        d, k, C = X.shape[1], T.shape[1], float(self.C)

        def loss_grad(wb):
            W = wb.reshape(d + 1, k)
            m = np.maximum(1.0 - T * (X @ W[:-1] + W[-1]), 0.0)
            g = -2.0 * C * (T * m)
            grad = W.copy()
            grad[:-1] += X.T @ g
            grad[-1] += g.sum(axis=0)
            return 0.5 * float(np.sum(W * W)) + C * float(np.sum(m * m)), grad.ravel()

        g0 = np.abs(loss_grad(np.zeros((d + 1) * k))[1]).max()
        res = minimize(loss_grad, np.zeros((d + 1) * k), jac=True, method="L-BFGS-B",
                       options={"maxiter": self.max_iter, "gtol": self.tol * g0,
                                "ftol": 1e-12})
        if res.status == 1:
            warnings.warn(f"{type(self).__name__} (C={C:g}) reached max_iter={self.max_iter} "
                          f"before its gradient fell below tol; increase max_iter.",
                          ConvergenceWarning, stacklevel=2)
        W = res.x.reshape(d + 1, k)
        self.coef_, self.intercept_, self.n_iter_ = W[:-1].T.copy(), W[-1].copy(), int(res.nit)
        self.solver_ = "lbfgs"
        return self

    def decision_function(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        scores = X @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict(self, X):
        scores = self.decision_function(X)
        idx = (scores > 0).astype(int) if scores.ndim == 1 else np.argmax(scores, axis=1)
        return self.classes_[idx]


def rbf_gram(X, Y=None, gamma=1.0):
    """exp(-gamma ||x - y||^2) through one BLAS matrix product (sklearn's rbf_kernel)."""
    from sklearn.metrics.pairwise import rbf_kernel
    return rbf_kernel(X, Y, gamma=gamma)


class KernelRBFSVC(ClassifierMixin, BaseEstimator):
    """SVC(kernel="rbf") whose kernel matrix, on wide inputs, is computed by BLAS and given to
    libsvm as precomputed: the same optimisation problem, hence the same model up to rounding.

    libsvm evaluates the kernel one pair at a time (a dot product each), which dominates the
    fit on wide inputs; one matrix product is far faster. The price is the n x n float64 matrix
    (0.8 GB at 10k rows): classical.rbf_max_train bounds the rows. Prediction computes the
    kernel against the support vectors only. Below PRECOMPUTE_MIN_FEATURES features libsvm's
    own kernel is faster and is used (`precompute_` says which ran).

    Parameters
    ----------
    C : float, default=1.0
    gamma : float or "scale", default="scale"
        "scale" = 1 / (n_features * X.var()), as in SVC.
    cache_size : float, default=1000
        libsvm's kernel cache, MB.
    random_state : int or None, default=None
    precompute : {"auto", True, False}, default="auto"
        "auto": precompute from PRECOMPUTE_MIN_FEATURES features.
    """

    def __init__(self, C=1.0, gamma="scale", cache_size=1000, random_state=None,
                 precompute="auto"):
        self.C = C
        self.gamma = gamma
        self.cache_size = cache_size
        self.random_state = random_state
        self.precompute = precompute

    def _svc(self, kernel="precomputed", gamma="scale"):
        from sklearn.svm import SVC
        return SVC(kernel=kernel, gamma=gamma, C=self.C, cache_size=self.cache_size,
                   random_state=self.random_state)

    def _precomputes(self, n_features) -> bool:
        if self.precompute not in ("auto", True, False):
            raise ValueError(f"The 'precompute' parameter of {type(self).__name__} must be "
                             f"'auto', True or False. Got {self.precompute!r} instead.")
        return self.precompute is True or (self.precompute == "auto"
                                           and n_features >= PRECOMPUTE_MIN_FEATURES)

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, order="C")
        check_classification_targets(y)
        if not self._precomputes(X.shape[1]):
            self.gamma_, self.precompute_ = self._gamma(X), False
            self.svc_ = self._svc("rbf", self.gamma_).fit(X, y)
            self.classes_ = self.svc_.classes_
            return self
        return self._fit_gram(rbf_gram(X, gamma=self._gamma(X)), X, y)

    def _gamma(self, X) -> float:
        if isinstance(self.gamma, str) and self.gamma == "scale":
            var = X.var()
            return 1.0 / (X.shape[1] * var) if var != 0 else 1.0
        if isinstance(self.gamma, (int, float, np.number)) and self.gamma > 0:
            return float(self.gamma)
        raise ValueError(f"The 'gamma' parameter of {type(self).__name__} must be 'scale' or a "
                         f"float > 0. Got {self.gamma!r} instead.")

    def _fit_gram(self, K, X, y):
        """Fit on the train kernel K (the search computes the distances once for all points)."""
        self.gamma_, self.precompute_ = self._gamma(X), True
        self.svc_ = self._svc().fit(K, y)
        self.classes_ = self.svc_.classes_
        self.support_vectors_ = X[self.svc_.support_]
        self.n_fit_rows_ = len(X)
        return self

    def _gram(self, X):
        """Kernel of X against the fit rows, as libsvm reads it: only support columns used."""
        K = np.zeros((len(X), self.n_fit_rows_))
        K[:, self.svc_.support_] = rbf_gram(X, self.support_vectors_, gamma=self.gamma_)
        return K

    def _chunked(self, method, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        if not self.precompute_:
            return getattr(self.svc_, method)(X)
        step = max(1, (64 << 20) // (8 * self.n_fit_rows_))     # ~64 MB of kernel at a time
        return np.concatenate([getattr(self.svc_, method)(self._gram(X[i:i + step]))
                               for i in range(0, len(X), step)])

    def decision_function(self, X):
        return self._chunked("decision_function", X)

    def predict(self, X):
        return self._chunked("predict", X)


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


def sweep_rbf_gram(est, Xf, yf, Xv, yv, grid, n_jobs=1) -> list[float]:
    """KernelRBFSVC grid: squared distances computed once (two BLAS products), each point's
    kernel is exp(-gamma D); points fitted in threads (libsvm releases the GIL), so the
    distance matrices are shared, not copied to processes. Narrow inputs (libsvm's own
    kernel): one fit per point, in parallel processes."""
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.metrics.pairwise import euclidean_distances
    if not est._precomputes(np.shape(Xf)[1]):
        return sweep_each(est, Xf, yf, Xv, yv, grid, n_jobs, parallel=True)
    Xf, Xv = np.asarray(Xf, np.float64), np.asarray(Xv, np.float64)
    D, Dv = euclidean_distances(Xf, squared=True), euclidean_distances(Xv, Xf, squared=True)

    def score(params):
        model = clone(est).set_params(**params)
        g = model._gamma(Xf)
        K = np.multiply(D, -g)                        # rbf_kernel's operations, in place
        model._fit_gram(np.exp(K, out=K), Xf, yf)
        return float(np.mean(model.svc_.predict(np.exp(-g * Dv)) == yv))

    with ThreadPoolExecutor(max(1, min(n_jobs, len(grid)))) as pool:
        return list(pool.map(score, grid))


# Rounds without a better validation error before boosting stops. 20 stopped too early on the
# default experiment (block1: 55 rounds, val 0.924, where 200 rounds reach 0.931): at
# learning rate 0.3 the validation accuracy still creeps up over long flat stretches.
XGB_PATIENCE = 50


def sweep_early_stopping(est, Xf, yf, Xv, yv, grid, n_jobs=1) -> list[tuple]:
    """One booster per grid point, grown on the fit rows up to its n_estimators and stopped
    once the validation error has not improved for XGB_PATIENCE rounds. The number of rounds
    with the best validation accuracy (ties: the fewest) becomes the point's n_estimators for
    the refit: returns (val accuracy, {"estimator__n_estimators": rounds}) per point."""
    enc = LabelEncoder().fit(yf)
    seen = np.isin(yv, enc.classes_)     # a val class absent from fit rows is always wrong
    out = []
    for params in grid:
        inner = clone(clone(est).set_params(**params).estimator).set_params(
            early_stopping_rounds=XGB_PATIENCE,
            eval_metric="merror" if len(enc.classes_) > 2 else "error")
        inner.fit(Xf, enc.transform(yf), verbose=False,
                  eval_set=[(Xv[seen], enc.transform(yv[seen]))])
        rounds = int(inner.best_iteration) + 1
        proba = inner.predict_proba(Xv, iteration_range=(0, rounds))
        acc = float(np.mean(enc.classes_[np.argmax(proba, axis=1)] == yv))
        out.append((acc, {"estimator__n_estimators": rounds}))
    return out


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
    return PrimalLinearSVC(tol=1e-3, max_iter=1000)


def _rbf_svm(seed, n_jobs):
    return KernelRBFSVC(random_state=seed)  # no probabilities


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


CLASSIFIERS: Registry[Entry] = Registry(
    "classifier", ValueError, hint="(`python -m classical --list` describes them.)")
for _entry in [
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
          "LinearSVC's model (squared hinge, L2, one-vs-rest, regularised intercept) solved in "
          f"the primal (PrimalLinearSVC, tol 1e-3): from {LBFGS_MIN_FEATURES} features by "
          "L-BFGS on dense matrix products, below by liblinear. No probabilities: log_loss is "
          "blank."),
    Entry("rbf_svm", _rbf_svm, _rbf_grid,
          "C in {1, 10} x gamma in {0.3, 1, 3} / n_features (1/n_features = 'scale')",
          "SVC with an RBF kernel (KernelRBFSVC: the same model as SVC(kernel='rbf')), from "
          f"{PRECOMPUTE_MIN_FEATURES} features with the kernel computed by BLAS and passed to "
          "libsvm precomputed (the search computes the distances once, grid points fitted in "
          "threads), below by libsvm (grid points in parallel processes); probability=False "
          "(no log_loss). Fitting is quadratic in the rows: above classical.rbf_max_train train "
          "rows it is fitted on a stratified seeded subset (stated in the run's notes).",
          sweep=sweep_rbf_gram, max_train_key="rbf_max_train"),
    Entry("random_forest", _random_forest,
          lambda d: [{"max_features": "sqrt", "min_samples_leaf": 1},
                     {"max_features": "sqrt", "min_samples_leaf": 4},
                     {"max_features": "log2", "min_samples_leaf": 1}],
          "(max_features, min_samples_leaf) in {(sqrt, 1), (sqrt, 4), (log2, 1)}",
          f"200 trees, unscaled input (trees are invariant to scaling). Grid points scored "
          f"with {RF_SEARCH_TREES}-tree forests; the refit grows all 200.",
          scale=False, sweep=sweep_fewer_trees),
    Entry("xgboost", _xgboost,
          lambda d: [{"estimator__max_depth": 6, "estimator__n_estimators": 200}],
          f"n_estimators <= 200 by early stopping on validation (patience {XGB_PATIENCE}; "
          f"max_depth 6, learning_rate 0.3)",
          "XGBClassifier(tree_method='hist', max_bin=64) on labels encoded to 0..K-1 "
          "(LabelEncodedClassifier; its label_encoder_ is saved with the model). The search "
          f"boosts up to 200 rounds and stops {XGB_PATIENCE} rounds after the best validation "
          "error; the refit on train + val grows that many rounds (best_params records it).",
          scale=False, sweep=sweep_early_stopping),
    Entry("knn", _knn,
          lambda d: [{"n_neighbors": k} for k in (1, 5, 15)],
          "n_neighbors in {1, 5, 15}",
          "k-nearest neighbours (Euclidean, uniform weights) on standardised features."),
]:
    CLASSIFIERS.register(_entry.name, _entry)
# The entries by name, the registry's own mapping: benchmarks/classical_wide.py swaps entries
# in it to time the settings before issue 15.
_REGISTRY = CLASSIFIERS._entries


# The setting fitted when no validation is possible (one label per class), declared before any
# data is seen: the library defaults, except kNN, which can only use its one nearest neighbour.
FALLBACK = {"logreg": {"C": 1.0}, "linear_svm": {"C": 0.01}, "rbf_svm": {"C": 1.0},
            "random_forest": {"max_features": "sqrt", "min_samples_leaf": 1},
            "xgboost": {"estimator__max_depth": 6, "estimator__n_estimators": 100},
            "knn": {"n_neighbors": 1}}


def available() -> list[str]:
    return CLASSIFIERS.available()


def get(name: str) -> Entry:
    """The registry entry of `name`; an unknown name lists the valid ones and a close match."""
    return CLASSIFIERS.get(name)


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
