"""The linear probe: multinomial logistic regression with C chosen on validation, as one core rule.

Used by the classical `logreg` (its C search, `sweep_warm_c`) and by fine-tuning's k = 0 (the whole
fit, `fit_probe`, then `fold` to load it as a Keras `Dense` softmax head), so "logreg at the
deepest cut" and "k = 0" are the same method on the same features and rows:

1. standardise with the train rows' mean and standard deviation (sklearn `StandardScaler`);
2. sweep C over Kornblith et al.'s 45 values (`KORNBLITH_C`, 1e-6 … 1e5) in increasing order,
   one L-BFGS model warm-started from the previous optimum, EVERY C fitted to convergence
   (max_iter `LOGREG_MAX_ITER`; convergence warnings are counted, never silenced), scored by
   validation accuracy; the sweep stops `LOGREG_PATIENCE` values past the peak;
3. the best C (ties: the smallest) is refitted, scaler included, on train + val.

`fold` turns the fitted scaler + logistic regression into one affine map on the raw features:
W' = W / sigma, b' = b - (mu / sigma) @ W, so softmax(x @ W' + b') is the pipeline's
predict_proba (a binary model's single logit z becomes the pair (0, z): softmax of it is
sigmoid(z)).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

KORNBLITH_C = tuple(float(c) for c in np.logspace(-6, 5, 45))
LOGREG_PATIENCE = 8      # ~2 decades of C without a better validation accuracy
LOGREG_MAX_ITER = 1000

PROBE_RULE = ("C of a multinomial L-BFGS logistic regression on standardised features chosen by "
              "validation accuracy over Kornblith's 45 values (warm-started, every C converged, "
              f"stopped after {LOGREG_PATIENCE} values without a better one); refit at that C on train + val")


def _accuracy(model, X, y) -> float:
    return float(np.mean(model.predict(X) == y))


def sweep_warm_c(est, Xf, yf, Xv, yv, grid, n_jobs=1, patience=None) -> list:
    """Logistic regression along increasing C, each fit starting from the previous optimum.

    Stops after `patience` values of C without a better validation accuracy (the path has
    passed its peak: weaker regularisation only overfits more), counted only once the accuracy
    has risen above its value at the smallest C, so the flat start of the path (tiny C predicts
    the class prior) never stops it. The values not fitted score None. patience=None:
    LOGREG_PATIENCE; 0: sweep every value."""
    patience = LOGREG_PATIENCE if patience is None else patience
    model = clone(est).set_params(warm_start=True)    # each C to convergence (its max_iter)
    Xf = np.asarray(Xf, dtype=np.float64)
    scores: list = [None] * len(grid)
    best, since, first = -1.0, 0, None
    for i in sorted(range(len(grid)), key=lambda i: grid[i]["C"]):
        model.set_params(**grid[i])
        model.fit(Xf, yf)      # a ConvergenceWarning reaches the caller, which notes it
        scores[i] = _accuracy(model, Xv, yv)
        first = scores[i] if first is None else first
        if scores[i] > best:
            best, since = scores[i], 0
        elif best > first:      # past the peak; the flat start (the prior at tiny C) is not
            since += 1
        if patience and since >= patience:
            break
    return scores


def logreg(seed: int = 0):
    """The probe's estimator: multinomial softmax (sklearn's default for L-BFGS), L-BFGS."""
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(solver="lbfgs", max_iter=LOGREG_MAX_ITER, random_state=seed)


@dataclass
class Probe:
    """A fitted probe: the sklearn pipeline (scaler + logistic regression, refit on train + val)
    and its folded Keras head weights (kernel: features x classes, bias: classes)."""
    model: object
    C: float
    val_accuracy: float
    kernel: np.ndarray
    bias: np.ndarray
    n_train: int           # rows of the final fit (train + val)
    n_val: int             # rows the C search scored
    val_scores: list = field(default_factory=list)
    notes: str = ""
    seconds: float = 0.0

    def params(self) -> dict:
        return {"C": self.C, "C_candidates_fitted": sum(s is not None for s in self.val_scores)}


def fold(pipeline, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(kernel, bias) of the affine map on RAW features equal to `pipeline`'s (StandardScaler →
    LogisticRegression) logits: W' = W / sigma, b' = b - (mu / sigma) @ W. Classes must be
    0 … n_classes - 1 (those absent from training get a logit of -1e9 … never predicted)."""
    scaler, clf = pipeline[0], pipeline[-1]
    coef = np.asarray(clf.coef_, dtype=np.float64)            # (K or 1, d)
    intercept = np.asarray(clf.intercept_, dtype=np.float64)
    classes = np.asarray(clf.classes_)
    if len(classes) == 2 and coef.shape[0] == 1:              # binary: logits (0, z)
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    mu, sigma = np.asarray(scaler.mean_, np.float64), np.asarray(scaler.scale_, np.float64)
    W = (coef / sigma).T                                      # (d, K)
    b = intercept - (mu / sigma) @ coef.T
    kernel = np.zeros((W.shape[0], n_classes))
    bias = np.full(n_classes, -1e9)
    kernel[:, classes] = W
    bias[classes] = b
    return kernel.astype(np.float32), bias.astype(np.float32)


def fit_probe(X_train, y_train, X_val, y_val, n_classes: int, seed: int = 0,
              grid=KORNBLITH_C, patience=None) -> Probe:
    """Choose C on (X_val, y_val) with the warm-started sweep (scaler fitted on the train rows),
    refit scaler + logistic regression at that C on train + val, fold it into head weights."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    X_train, X_val = np.asarray(X_train, np.float64), np.asarray(X_val, np.float64)
    y_train, y_val = np.asarray(y_train), np.asarray(y_val)
    scaler = StandardScaler().fit(X_train)
    points = [{"C": float(c)} for c in grid]
    notes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        scores = sweep_warm_c(logreg(seed), scaler.transform(X_train), y_train,
                              scaler.transform(X_val), y_val, points, patience=patience)
    _note(caught, notes, "C value(s) of the search")
    best = int(np.argmax([-np.inf if s is None else s for s in scores]))  # ties: smallest C
    model = Pipeline([("scale", StandardScaler()),
                      ("clf", logreg(seed).set_params(**points[best]))])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(np.concatenate([X_train, X_val]), np.concatenate([y_train, y_val]))
    _note(caught, notes, "final fit")
    kernel, bias = fold(model, n_classes)
    return Probe(model=model, C=points[best]["C"], val_accuracy=float(scores[best]),
                 kernel=kernel, bias=bias, n_train=len(y_train) + len(y_val), n_val=len(y_val),
                 val_scores=scores, notes=" ".join(notes), seconds=time.perf_counter() - t0)


def _note(caught, notes: list, where: str) -> None:
    n = 0
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            n += 1
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if n:
        notes.append(f"{n} ConvergenceWarning(s) in the {where} (max_iter {LOGREG_MAX_ITER}).")
