"""Classical pipelines: search + refit (`fit_select`) and predict seconds per classifier x width.

Synthetic embeddings from `make_classification` (float32, the default experiment's classifier
list, the stage's own n_jobs / validation fraction / rbf_max_train). The fit time is the whole
protocol `make classify` runs per cut: hyperparameter search on a validation split carved from
train, then the refit on all of train. Some cells (RBF SVM, random forest, XGBoost on 2048
features) would take many minutes at full size, so each cell first runs on a small pilot and, if
the predicted full-size time exceeds the cell's budget, is measured on fewer training rows (the
table says how many, and the predicted full-size time).
"""
from __future__ import annotations

import time

import numpy as np

# How fit time grows with rows, for the extrapolation from the pilot (kernel SVMs are quadratic).
_EXPONENT = {"rbf_svm": 2.0}


def _fit_select():
    try:
        from classical.protocol import fit_select
    except ImportError:
        from classical.pipelines import fit_select
    return fit_select


def _data(n_train, n_test, dim, n_classes, seed=0):
    from sklearn.datasets import make_classification
    informative = max(2, min(64, dim // 2))
    while 2 ** informative < n_classes:
        informative += 1
    X, y = make_classification(n_samples=n_train + n_test, n_features=dim,
                               n_informative=informative, n_redundant=min(16, dim - informative),
                               n_classes=n_classes, n_clusters_per_class=1, class_sep=1.0,
                               random_state=seed)
    X = X.astype(np.float32)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def time_cell(name, X, y, Xt, yt, n_rows, cfg) -> dict:
    fit_select = _fit_select()
    t0 = time.perf_counter()
    model, info = fit_select(name, X[:n_rows], y[:n_rows], val_fraction=cfg["val_fraction"],
                             seed=0, n_jobs=cfg["n_jobs"], rbf_max_train=cfg["rbf_max_train"])
    t1 = time.perf_counter()
    pred = model.predict(Xt)
    t2 = time.perf_counter()
    best = info.get("best_params") if isinstance(info, dict) else None
    return {"fit_select_seconds": t1 - t0, "predict_seconds": t2 - t1,
            "accuracy": float(np.mean(np.asarray(pred) == yt)), "best_params": best}


def run(sizes: dict, ctx: dict) -> dict:
    from classical import pipelines
    from cutpoint.config import DEFAULTS

    wanted = sizes.get("classifiers") or DEFAULTS["classical"]["classifiers"]
    avail = list(pipelines.available())
    names = [c for c in wanted if c in avail]
    cfg = {"val_fraction": DEFAULTS["dataset"]["val_fraction"], "n_jobs": sizes["n_jobs"],
           "rbf_max_train": DEFAULTS["classical"]["rbf_max_train"]}
    n_full, budget, pilot = sizes["n_train"], sizes["cell_budget_s"], sizes["pilot_rows"]
    rows, notes = [], []
    if missing := [c for c in wanted if c not in avail]:
        notes.append(f"Not available here (skipped): {', '.join(missing)}.")
    for dim in sizes["dims"]:
        X, y, Xt, yt = _data(n_full, sizes["n_test"], dim, sizes["n_classes"])
        for name in names:
            n_rows, estimate, note = n_full, None, ""
            if pilot and pilot < n_full:
                p = time_cell(name, X, y, Xt, yt, pilot, cfg)
                t_p = p["fit_select_seconds"] + p["predict_seconds"]
                alpha = _EXPONENT.get(name, 1.0)
                estimate = t_p * (n_full / pilot) ** alpha
                if estimate > budget:
                    n_rows = int(pilot * (budget / t_p) ** (1 / alpha)) // 1000 * 1000
                    n_rows = min(n_full, max(pilot, n_rows))
                    note = (f"fewer rows: {n_full} predicted at ~{estimate:.0f} s "
                            f"(pilot {pilot} rows: {t_p:.1f} s, time ~ rows^{alpha:g})")
            r = (p if pilot and n_rows == pilot else
                 time_cell(name, X, y, Xt, yt, n_rows, cfg))
            rows.append({"classifier": name, "dim": dim, "train_rows": n_rows,
                         "test_rows": len(yt), "fit_select_seconds": r["fit_select_seconds"],
                         "predict_seconds": r["predict_seconds"], "accuracy": r["accuracy"],
                         "predicted_full_seconds": estimate, "note": note})
    notes.append(f"Synthetic: make_classification, {sizes['n_classes']} classes, float32; fit = "
                 f"fit_select (validation fraction {cfg['val_fraction']}, n_jobs {cfg['n_jobs']}, "
                 f"rbf_max_train {cfg['rbf_max_train']}); per-cell budget {budget:g} s.")
    return {"method": __doc__.split("\n", 1)[1].strip().replace("\n", " "), "rows": rows,
            "notes": notes}
