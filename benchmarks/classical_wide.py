"""The six classical classifiers on wide embeddings at full size: search + refit, no extrapolation.

Data: random ReLU features of Fashion-MNIST, relu((pixels / 255 - mean) @ W) with W a seeded
Gaussian 784 x dim matrix (10 classes; train + validation rows from the dataset's train split,
test rows from its test split): dense, correlated, half zeros, like pooled CNN features, and
a problem the classifiers do not all solve equally (test accuracy 0.80-0.88). Without the
Debian package `dataset-fashion-mnist`, sklearn's make_classification (10 classes) stands in;
the notes say which ran. Each classifier runs `classical.protocol.fit_select` (validation = a
stratified seeded 10 % of the rows, `make classify`'s n_jobs and rbf_max_train), then predicts
the test rows, in its own process killed at a time limit.

The goal row is the sum of the six fit_select times (search + refit) on n_train rows x dim, with
today's settings. The same classifiers with the previous settings (liblinear LinearSVC, libsvm's
own RBF kernel, XGBoost grid {50, 100, 200} rounds scored by truncation, random-forest search
with 100 trees) run side by side on fewer rows (`compare_rows`), where the old ones finish:
seconds, CPU seconds, validation and test accuracy, chosen hyperparameters, before and after.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, doc_method, target

GOAL_S = 600.0


def make_data(n_rows: int, n_test: int, dim: int, seed: int = 0):
    """(X, y, X_test, y_test, source): random ReLU features of Fashion-MNIST, else synthetic."""
    from cutpoint.datasets import DEBIAN_DIRS, read_idx
    found = [d for d in DEBIAN_DIRS["fashion_mnist"]
             if (d / "train-images-idx3-ubyte.gz").exists() and (d / "t10k-images-idx3-ubyte.gz").exists()]
    if not found:
        from benchmarks.classifiers import _data
        return (*_data(n_rows, n_test, dim, 10, seed), "make_classification (10 classes)")
    d = found[0]
    x = read_idx(d / "train-images-idx3-ubyte.gz").reshape(-1, 784)[:n_rows] / np.float32(255)
    xt = read_idx(d / "t10k-images-idx3-ubyte.gz").reshape(-1, 784)[:n_test] / np.float32(255)
    y = read_idx(d / "train-labels-idx1-ubyte.gz")[:n_rows].astype(np.int64)
    yt = read_idx(d / "t10k-labels-idx1-ubyte.gz")[:n_test].astype(np.int64)
    W = np.random.default_rng(seed).standard_normal((784, dim), dtype=np.float32)
    W /= np.float32(np.sqrt(784))
    mu = x.mean(axis=0, dtype=np.float32)
    feats = lambda a: np.maximum((a - mu) @ W, 0).astype(np.float32)  # noqa: E731
    return feats(x), y, feats(xt), yt, f"Fashion-MNIST random ReLU features ({d})"


# ----------------------------------------------------------------------------- previous settings

def _sweep_truncated_rounds(est, Xf, yf, Xv, yv, grid, n_jobs=1):
    """The previous XGBoost search: one booster grown to the largest n_estimators, fewer
    rounds scored by truncation."""
    from sklearn.base import clone
    key = "estimator__n_estimators"
    model = clone(est).set_params(**{key: max(p[key] for p in grid)}).fit(Xf, yf)
    out = []
    for p in grid:
        proba = model.estimator_.predict_proba(Xv, iteration_range=(0, p[key]))
        out.append(float(np.mean(model.classes_[np.argmax(proba, axis=1)] == yv)))
    return out


def use_previous_settings() -> None:
    """Swap the registry's linear_svm, rbf_svm, xgboost and random_forest back to the settings
    before issue 15 (in this worker process only)."""
    from sklearn.svm import SVC, LinearSVC

    from classical import pipelines
    reg = pipelines._REGISTRY
    reg["linear_svm"] = dataclasses.replace(
        reg["linear_svm"], parallel_grid=True, sweep=None,
        build=lambda seed, n_jobs: LinearSVC(dual="auto", tol=1e-3, max_iter=2000,
                                             random_state=seed))
    reg["rbf_svm"] = dataclasses.replace(
        reg["rbf_svm"], parallel_grid=True, sweep=None,
        build=lambda seed, n_jobs: SVC(kernel="rbf", cache_size=1000, random_state=seed))
    reg["xgboost"] = dataclasses.replace(
        reg["xgboost"], sweep=_sweep_truncated_rounds,
        grid=lambda d: [{"estimator__max_depth": 6, "estimator__n_estimators": n}
                        for n in (50, 100, 200)])
    pipelines.RF_SEARCH_TREES = 100


# ----------------------------------------------------------------------------- one run

def time_one(name, data_dir, n_rows, settings, cfg) -> dict:
    from classical.protocol import fit_select
    if settings == "before":
        use_previous_settings()
    X, y = np.load(data_dir / "X.npy")[:n_rows], np.load(data_dir / "y.npy")[:n_rows]
    Xt, yt = np.load(data_dir / "Xt.npy"), np.load(data_dir / "yt.npy")
    cpu0 = _cpu()
    t0 = time.perf_counter()
    model, info = fit_select(name, X, y, val_fraction=cfg["val_fraction"], seed=0,
                             n_jobs=cfg["n_jobs"], rbf_max_train=cfg["rbf_max_train"])
    fit_s, cpu_s = time.perf_counter() - t0, _cpu() - cpu0
    pred = np.asarray(model.predict(Xt))
    return {"fit_select_seconds": fit_s, "cpu_seconds": cpu_s,
            "search_seconds": info["search_seconds"], "refit_seconds": info["refit_seconds"],
            "rows_fitted": info["n_train"], "val_accuracy": info["best_val_accuracy"],
            "test_accuracy": float(np.mean(pred == yt)), "best_params": info["best_params"]}


def _cpu() -> float:
    """CPU seconds of this process and its finished children (joblib workers)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _spawn(name, data_dir, n_rows, settings, cfg, timeout) -> dict | None:
    cmd = [sys.executable, "-m", "benchmarks.classical_wide", "--worker", "--name", name,
           "--data", str(data_dir), "--rows", str(n_rows), "--settings", settings,
           "--cfg", json.dumps(cfg)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None
    if proc.returncode != 0:
        raise RuntimeError(f"{name} ({settings}, {n_rows} rows) failed: {err[-1500:]}")
    return json.loads(out.strip().splitlines()[-1])


def run(sizes: dict, ctx: dict) -> dict:
    from cutpoint.config import DEFAULTS

    names = sizes.get("classifiers") or DEFAULTS["classical"]["classifiers"]
    cfg = {"val_fraction": DEFAULTS["dataset"]["val_fraction"], "n_jobs": sizes["n_jobs"],
           "rbf_max_train": DEFAULTS["classical"]["rbf_max_train"]}
    n, dim = sizes["n_train"], sizes["dim"]
    plan = [(m, "after", n, sizes["timeout_s"]) for m in names]
    plan += [(m, s, sizes["compare_rows"], sizes["compare_timeout_s"])
             for m in names if m in sizes["changed"] for s in ("before", "after")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="cutpoint-bench-wide-") as tmp:
        X, y, Xt, yt, source = make_data(n, sizes["n_test"], dim)
        for key, arr in zip(("X", "y", "Xt", "yt"), (X, y, Xt, yt)):
            np.save(Path(tmp) / f"{key}.npy", arr)
        for name, settings, n_rows, timeout in plan:
            print(f"[bench]   {name} {settings} {n_rows} x {dim}", file=sys.stderr, flush=True)
            r = _spawn(name, Path(tmp), n_rows, settings, cfg, timeout)
            row = {"classifier": name, "settings": settings, "rows": n_rows, "dim": dim}
            row.update(r if r else {"note": f"did not finish within {timeout:.0f} s"})
            rows.append(row)
            print(f"[bench]   -> {json.dumps(row, default=str)}", file=sys.stderr, flush=True)
    full = [r for r in rows if r["rows"] == n and r["settings"] == "after"]
    done = [r["fit_select_seconds"] for r in full if "fit_select_seconds" in r]
    total = sum(done) if len(done) == len(full) else None
    what = f"classical six classifiers on {n / 1000:g}k x {dim}"
    notes = [f"Data: {source}; {n} rows (10 % of them validation), {sizes['n_test']} test rows, "
             f"float32; n_jobs {cfg['n_jobs']}, rbf_max_train {cfg['rbf_max_train']}.",
             f"Goal: the sum of the {len(full)} fit_select times at {n} rows (search + refit), "
             f"today's settings: {'not measured (a run timed out)' if total is None else f'{total:.0f} s'}.",
             "settings 'before' = the previous registry (see Method), on "
             f"{sizes['compare_rows']} rows, side by side with 'after' in the same run; logreg and "
             "knn did not change. Wall seconds depend on what else the machine runs: compare "
             "ratios within one run; cpu_seconds counts this process and its finished children."]
    order = ["classifier", "settings", "rows", "dim", "fit_select_seconds", "cpu_seconds",
             "search_seconds", "refit_seconds", "rows_fitted", "val_accuracy", "test_accuracy",
             "best_params", "note"]
    return {"method": doc_method(__doc__), "rows": [{k: r.get(k) for k in order} for r in rows],
            "notes": notes, "summary": {"total_fit_select_seconds": total, "source": source},
            "targets": [target("classical_wide", what, total, GOAL_S, higher_is_better=False,
                               unit="s")]}


def _main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.classical_wide")
    p.add_argument("--worker", action="store_true", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--settings", choices=("before", "after"), required=True)
    p.add_argument("--cfg", required=True)
    a = p.parse_args(argv)
    print(json.dumps(time_one(a.name, Path(a.data), a.rows, a.settings, json.loads(a.cfg)),
                     default=str))


if __name__ == "__main__":
    _main()
