"""Peak memory per Dask worker of the out-of-core classical stage at two row counts; 1 vs 2 workers.

A synthetic store (rows x width float32, Gaussian classes, train / val / test = 72 / 8 / 20 %) is
written chunk by chunk with embeddings/store.py, then classified by the streaming engines of
classical/distributed.py: logreg as averaged SGD (`sgd-stream`) and XGBoost from an
ExtMemQuantileDMatrix through XGBoost's collective (`xgb-collective`); classical.max_in_memory_mb
is set to a tenth of the store, so both stream, with the short grids below (the registry's
200-round grid would take hours here). Each (classifier, rows, workers) runs in a fresh subprocess with its own LocalCluster of
single-threaded worker processes; the peak RSS of every worker (getrusage in the worker, read
with client.run) and of the client process are reported. RSS also counts file-backed pages:
XGBoost's external-memory cache is a file on disk mapped into the worker, and the kernel keeps
those pages resident while memory is free and drops them under pressure. So a thread in each
worker samples /proc/self/status every 20 ms and the peak of RssAnon (memory the process owns:
Python, buffers, XGBoost's per-row gradients and margins) is reported beside the peak of RssFile
(the mapped cache). The memory goal: the worker's anonymous peak at the larger row count is at
most GOAL_RATIO x the peak at the smaller one (flat up to XGBoost's per-row state, rows x classes
x a few floats, which the notes size) and the worker's RSS is below BOUND_MB. Scaling: the wall time of the larger count on 1 worker over 2 workers,
measured in this run (the machine has 2 cores, shared with whatever else runs).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, doc_method, target

GOAL_RATIO = 1.10
BOUND_MB = 1024
GRIDS = {"logreg": [{"clf__alpha": 1e-5}, {"clf__alpha": 1e-3}],
         "xgboost": [{"clf__estimator__max_depth": 4, "clf__estimator__n_estimators": 10}]}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KB on Linux


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _start_sampler(interval: float = 0.02) -> bool:
    """Run in each worker: a daemon thread keeping the peaks of RssAnon and RssFile."""
    import threading
    global _PEAKS
    _PEAKS = {"anon_kb": 0, "file_kb": 0}

    def loop():
        while True:
            _PEAKS["anon_kb"] = max(_PEAKS["anon_kb"], _status_kb("RssAnon"))
            _PEAKS["file_kb"] = max(_PEAKS["file_kb"], _status_kb("RssFile"))
            time.sleep(interval)
    threading.Thread(target=loop, daemon=True).start()
    return True


def _sampled_peaks_mb() -> dict:
    return {k.replace("_kb", "_mb"): v / 1024 for k, v in _PEAKS.items()}


_PEAKS: dict = {}


def write_store(path, rows: int, width: int, n_classes: int, chunk_rows: int, seed=0) -> float:
    """A synthetic store written chunk by chunk (never the whole matrix in memory); its MB."""
    from embeddings import store
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, rows)
    n_test, n_val = rows // 5, rows * 2 // 25
    splits = ["train"] * (rows - n_val - n_test) + ["val"] * n_val + ["test"] * n_test
    store.create(path, ids=[f"r{i}" for i in range(rows)], labels=y, splits=splits,
                 class_names=[f"c{k}" for k in range(n_classes)], chunk_rows=chunk_rows,
                 cuts={"fc": {"width": width, "layer": "fc", "pooling": "avg"}},
                 provenance={"backbone": "synthetic", "extraction_key": f"scale-{rows}"})
    centers = np.random.default_rng(seed + 1).normal(0, 0.15, (n_classes, width))
    for a in range(0, rows, chunk_rows):
        b = min(rows, a + chunk_rows)
        block = centers[y[a:b]] + rng.normal(size=(b - a, width))
        store.write_rows(path, a, {"fc": block.astype(np.float32)})
    return rows * width * 4 / 2 ** 20


def worker(store_path: str, name: str, workers: int) -> dict:
    """One classifier through the streaming engine on a fresh LocalCluster (a subprocess)."""
    from classical import distributed
    from cutpoint import config
    from embeddings import store

    limit = distributed.cut_megabytes(store_path, "fc") / 10      # below the store: it streams
    cfg = config.load(None, [f"classical.max_in_memory_mb={limit}", "classical.bootstrap=100",
                             "classical.n_jobs=1"])
    engine = distributed.engine_for(name, 10 * limit, limit, None)
    with distributed.client_for(workers) as client:
        client.run(_start_sampler)
        t0 = time.perf_counter()
        _, info, ev, _, _ = distributed.fit_out_of_core(
            engine, name, cfg, store_path, "fc", store.class_names(store_path), client,
            grid=GRIDS[name])
        seconds = time.perf_counter() - t0
        peaks = sorted(client.run(_peak_mb).values())
        sampled = list(client.run(_sampled_peaks_mb).values())
    return {"engine": engine, "seconds": seconds, "worker_peaks_mb": peaks,
            "worker_anon_peaks_mb": sorted(p["anon_mb"] for p in sampled),
            "worker_file_peaks_mb": sorted(p["file_mb"] for p in sampled),
            "client_peak_mb": _peak_mb(), "accuracy": ev["accuracy"],
            "val_accuracy": info["best_val_accuracy"]}


def _spawn(store_path, name, workers) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.scale", "--worker", "--store", str(store_path),
           "--classifier", name, "--workers", str(workers)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=7200)
    if out.returncode != 0:
        raise RuntimeError(f"scale worker failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(sizes: dict, ctx: dict) -> dict:
    small, big = sizes["rows"]
    width, k, chunk = sizes["width"], sizes["n_classes"], sizes["chunk_rows"]
    rows, targets = [], []
    with tempfile.TemporaryDirectory(prefix="cutpoint-bench-scale-") as tmp:
        runs = {}
        for n in (small, big):
            path = Path(tmp) / f"store_{n}.h5"
            mb = write_store(path, n, width, k, chunk)
            for name in ("logreg", "xgboost"):
                for w in ((1, 2) if n == big else (1,)):
                    r = _spawn(path, name, w)
                    runs[(name, n, w)] = r
                    rows.append({"classifier": name, "engine": r["engine"], "rows": n,
                                 "width": width, "matrix_mb": mb, "workers": w,
                                 "max_worker_peak_mb": max(r["worker_peaks_mb"]),
                                 "max_worker_anon_mb": max(r["worker_anon_peaks_mb"]),
                                 "max_worker_file_mb": max(r["worker_file_peaks_mb"]),
                                 "client_peak_mb": r["client_peak_mb"],
                                 "seconds": r["seconds"], "val_accuracy": r["val_accuracy"],
                                 "accuracy": r["accuracy"]})
            path.unlink()
    summary = {}
    for name in ("logreg", "xgboost"):
        a, b = runs[(name, small, 1)], runs[(name, big, 1)]
        ratio = max(b["worker_anon_peaks_mb"]) / max(a["worker_anon_peaks_mb"])
        rss_ratio = max(b["worker_peaks_mb"]) / max(a["worker_peaks_mb"])
        speedup = b["seconds"] / runs[(name, big, 2)]["seconds"]
        summary[name] = {"worker_anon_peak_ratio": ratio, "worker_rss_peak_ratio": rss_ratio,
                         "speedup_1_to_2_workers": speedup}
        targets += [
            target("scale", f"{name}: worker peak anonymous memory, {big:,} / {small:,} rows "
                   f"(x {width})", ratio, GOAL_RATIO, higher_is_better=False, unit="ratio"),
            target("scale", f"{name}: worker peak RSS at {big:,} x {width}",
                   max(b["worker_peaks_mb"]), BOUND_MB, higher_is_better=False, unit="MB"),
        ]
    return {"method": doc_method(__doc__), "rows": rows, "targets": targets,
            "summary": summary,
            "notes": [f"Grids: {json.dumps(GRIDS)}; store chunk_rows {chunk}.",
                      "Worker RSS ratio (anonymous + file-backed pages) "
                      f"{big:,} / {small:,} rows: " + ", ".join(
                          f"{n} {s['worker_rss_peak_ratio']:.2f}" for n, s in summary.items())
                      + ". XGBoost's external-memory cache (about rows x width bytes of "
                      "quantised bins) is file-backed: its pages count in RSS while memory is "
                      "free and are dropped under pressure. Its per-row state is anonymous: "
                      f"gradient, hessian and margin per row and class, ~12 x {k} bytes a row "
                      f"({12 * k * big / 2**20:.0f} MB at {big:,} rows, "
                      f"{12 * k * 1_000_000 / 2**20:.0f} MB at 1M).",
                      "Wall times on a 2-core machine shared with other work: compare within "
                      "this run only. speedup_1_to_2_workers = seconds on 1 worker / on 2 "
                      f"at {big:,} rows: " + ", ".join(
                          f"{n} {s['speedup_1_to_2_workers']:.2f}x" for n, s in summary.items())]}


def _main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale")
    p.add_argument("--worker", action="store_true", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--workers", type=int, required=True)
    a = p.parse_args(argv)
    from benchmarks import scale   # by reference, so workers share the sampler's module state
    print(json.dumps(scale.worker(a.store, a.classifier, a.workers)))


if __name__ == "__main__":
    _main()
