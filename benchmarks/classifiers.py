"""Classical pipelines: search + refit (`fit_select`) and predict seconds per classifier x width.

Synthetic embeddings from `make_classification` (float32, the default experiment's classifier
list, the stage's own n_jobs / validation fraction / rbf_max_train). The fit time is the whole
protocol `make classify` runs per cut: hyperparameter search on a validation split carved from
train, then the refit on all of train.

Bounded time: some cells (XGBoost, random forest, RBF SVM, the 45-point logistic regression sweep
on 2048 features) take many minutes at 30k rows. Each cell therefore starts on a pilot of a few
hundred rows and doubles the rows (or jumps to the full size) only while the time predicted from
the last step fits the cell's budget; every step runs in its own process, killed at its
time limit. The table reports the largest size that finished, how many rows that is, and the
full-size time predicted from the last steps (time = a + b * rows^alpha, alpha = 2 for the
RBF kernel up to rbf_max_train, else 1) — or that even the pilot did not finish in time.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, doc_method

_EXPONENT = {"rbf_svm": 2.0}   # how fit time grows with rows (kernel SVMs are quadratic)


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
    """fit_select on the first n_rows training rows, then predict the test rows."""
    from classical.protocol import fit_select
    X, y = np.array(X[:n_rows]), np.array(y[:n_rows])   # in memory before the clock starts
    Xt, yt = np.array(Xt), np.array(yt)
    t0 = time.perf_counter()
    model, info = fit_select(name, X, y, val_fraction=cfg["val_fraction"], seed=0,
                             n_jobs=cfg["n_jobs"], rbf_max_train=cfg["rbf_max_train"])
    t1 = time.perf_counter()
    pred = model.predict(Xt)
    t2 = time.perf_counter()
    return {"fit_select_seconds": t1 - t0, "search_seconds": info.get("search_seconds"),
            "refit_seconds": info.get("refit_seconds"),
            "grid_points": len(info.get("val_scores", [])), "rows_fitted": info.get("n_train"),
            "predict_seconds": t2 - t1, "accuracy": float(np.mean(np.asarray(pred) == yt)),
            "best_params": info.get("best_params")}


def _spawn(data_dir, name, n_rows, cfg, timeout) -> dict | None:
    """time_cell in a fresh process; None if it did not finish within `timeout` seconds."""
    cmd = [sys.executable, "-m", "benchmarks.classifiers", "--worker", "--data", str(data_dir),
           "--name", name, "--rows", str(n_rows), "--cfg", json.dumps(cfg)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # the worker and its joblib/loky children
        proc.communicate()
        return None
    if proc.returncode != 0:
        raise RuntimeError(f"{name} on {n_rows} rows failed: {err[-1500:]}")
    return json.loads(out.strip().splitlines()[-1])


def _predict_full(points, n_full, alpha, cap):
    """Seconds at n_full from the last one or two (rows, seconds) points."""
    e = lambda n: float(min(n, cap)) ** alpha  # noqa: E731
    (n1, t1) = points[-1]
    if len(points) >= 2:
        n0, t0 = points[-2]
        if e(n1) > e(n0) and t1 > t0:
            b = (t1 - t0) / (e(n1) - e(n0))
            return t1 + b * (e(n_full) - e(n1))
    return t1 * e(n_full) / e(n1)


def measure_cell(data_dir, name, n_full, pilot, budget, cfg) -> dict:
    alpha = _EXPONENT.get(name, 1.0)
    cap = cfg["rbf_max_train"] if name == "rbf_svm" else n_full
    n = min(pilot, n_full) if pilot else n_full
    spent, points, last = 0.0, [], None
    timeout = max(budget, cfg["min_first_step_s"])
    while True:
        t0 = time.perf_counter()
        r = _spawn(data_dir, name, n, cfg, timeout)
        spent += time.perf_counter() - t0
        if r is None:
            break
        last = dict(r, train_rows=n)
        points.append((n, r["fit_select_seconds"] + r["predict_seconds"]))
        if n >= n_full:
            break
        left = budget - spent
        nxt = n_full if _predict_full(points, n_full, alpha, cap) <= left else 2 * n
        nxt = min(nxt, n_full)
        if _predict_full(points, nxt, alpha, cap) > left:
            break
        n, timeout = nxt, max(5.0, 1.5 * left)   # slack: a wrong guess costs half a budget
    row = {"classifier": name}
    if last is None:
        row.update(train_rows=n, note=f"did not finish within {timeout:.0f} s even on {n} rows")
        return row
    row.update({k: last[k] for k in ("train_rows", "rows_fitted", "grid_points",
                                     "fit_select_seconds", "search_seconds", "refit_seconds",
                                     "predict_seconds", "accuracy")})
    if last["train_rows"] < n_full:
        est = _predict_full(points, n_full, alpha, cap)
        row["predicted_full_seconds"] = est
        row["note"] = (f"fewer rows: {n_full} rows predicted at ~{est:.0f} s (steps "
                       + ", ".join(f"{a} rows {b:.1f} s" for a, b in points)
                       + (f"; {n} rows did not finish in {timeout:.0f} s" if r is None else "")
                       + ")")
    return row


def run(sizes: dict, ctx: dict) -> dict:
    from classical import pipelines
    from cutpoint.config import DEFAULTS

    wanted = sizes.get("classifiers") or DEFAULTS["classical"]["classifiers"]
    avail = list(pipelines.available())
    names = [c for c in wanted if c in avail]
    cfg = {"val_fraction": DEFAULTS["dataset"]["val_fraction"], "n_jobs": sizes["n_jobs"],
           "rbf_max_train": DEFAULTS["classical"]["rbf_max_train"],
           "min_first_step_s": sizes["min_first_step_s"]}
    n_full, pilot = sizes["n_train"], sizes["pilot_rows"]
    rows, notes = [], []
    if missing := [c for c in wanted if c not in avail]:
        notes.append(f"Not available here (skipped): {', '.join(missing)}.")
    t_start, cells = time.perf_counter(), len(names) * len(sizes["dims"])
    with tempfile.TemporaryDirectory(prefix="cutpoint-bench-cls-") as tmp:
        for dim in sizes["dims"]:
            d = Path(tmp) / f"d{dim}"
            d.mkdir()
            for key, arr in zip(("X", "y", "Xt", "yt"),
                                _data(n_full, sizes["n_test"], dim, sizes["n_classes"])):
                np.save(d / f"{key}.npy", arr)
            for name in names:
                left = sizes["section_budget_s"] - (time.perf_counter() - t_start)
                budget = min(sizes["cell_budget_s"], max(sizes["min_cell_s"], left / cells))
                cells -= 1
                row = measure_cell(d, name, n_full, pilot, budget, cfg)
                row.update(dim=dim, test_rows=sizes["n_test"], budget_seconds=budget)
                rows.append(row)
    notes.append("rows_fitted: rows of the final refit (RBF SVC: a stratified subset of at most "
                 "rbf_max_train); search = one fit per grid point on train minus validation.")
    notes.append(f"Synthetic: make_classification, {sizes['n_classes']} classes, float32; fit = "
                 f"fit_select (validation fraction {cfg['val_fraction']}, n_jobs {cfg['n_jobs']}, "
                 f"rbf_max_train {cfg['rbf_max_train']}); per-cell budget up to "
                 f"{sizes['cell_budget_s']:g} s, section budget {sizes['section_budget_s']:g} s.")
    order = ["classifier", "dim", "train_rows", "rows_fitted", "grid_points",
             "fit_select_seconds", "search_seconds", "refit_seconds", "predict_seconds",
             "accuracy", "predicted_full_seconds", "test_rows", "budget_seconds", "note"]
    rows = [{k: r.get(k) for k in order} for r in rows]
    return {"method": doc_method(__doc__), "rows": rows,
            "notes": notes}


def _main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.classifiers")
    p.add_argument("--worker", action="store_true", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--cfg", required=True)
    a = p.parse_args(argv)
    d = Path(a.data)
    X, y, Xt, yt = (np.load(d / f"{k}.npy", mmap_mode="r") for k in ("X", "y", "Xt", "yt"))
    print(json.dumps(time_cell(a.name, X, y, Xt, yt, a.rows, json.loads(a.cfg)), default=str))


if __name__ == "__main__":
    _main()
