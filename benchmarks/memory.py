"""Peak memory (RSS) of extracting N vs factor x N images, each in a fresh process.

Each extraction runs in its own subprocess (`python -m benchmarks.memory --worker …`) so peak RSS
is not shared, and reports `getrusage(RUSAGE_SELF).ru_maxrss` at the end. The .npz loader reads
the arrays into memory (a .npz is a zip: it cannot be memory-mapped), so the total peak also
grows with the dataset itself; the streaming claim ("memory stays flat as the dataset grows") is
about what extraction adds on top, so both are reported: total peak, and peak minus the
dataset's in-memory size (images + labels).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, doc_method, npz_config, quiet_tf, target, write_npz

GOAL_RATIO = 1.1


def _rss_mb() -> float:
    """Current resident set size."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def worker(npz, backbone, px, run_dir) -> dict:
    quiet_tf()
    import keras  # noqa: F401  (import cost is part of the baseline, not of extraction)
    import tensorflow  # noqa: F401

    from extract.extractor import extract
    base_rss, base_peak = _rss_mb(), _maxrss_mb()
    summary = extract(npz_config(npz, backbone, px), run_dir)
    return {"rss_after_imports_mb": base_rss, "peak_after_imports_mb": base_peak,
            "peak_mb": _maxrss_mb(), "rss_end_mb": _rss_mb(), "rows": summary["rows"],
            "extract_seconds": summary.get("seconds")}


def _spawn(npz, backbone, px, run_dir) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.memory", "--worker", "--npz", str(npz),
           "--backbone", backbone, "--px", str(px), "--run-dir", str(run_dir)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"memory worker failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(sizes: dict, ctx: dict) -> dict:
    name, px, ch, n, k = (sizes[key] for key in ("backbone", "px", "channels", "n", "factor"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="cutpoint-bench-mem-") as tmp:
        for rows_n in (n, k * n):
            npz = Path(tmp) / f"data_{rows_n}.npz"
            data = write_npz(npz, rows_n, px, ch)
            r = _spawn(npz, name, px, Path(tmp) / f"run_{rows_n}")
            npz.unlink()
            ds_mb = data["bytes"] / 2 ** 20
            rows.append({"backbone": name, "input": f"{px}x{px}x{ch}", "images": r["rows"],
                         "dataset_mb": ds_mb, "peak_rss_mb": r["peak_mb"],
                         "peak_minus_dataset_mb": r["peak_mb"] - ds_mb,
                         "rss_after_imports_mb": r["rss_after_imports_mb"],
                         "peak_above_imports_mb": r["peak_mb"] - r["rss_after_imports_mb"],
                         "extract_seconds": r["extract_seconds"]})
    small, big = rows
    total_ratio = big["peak_rss_mb"] / small["peak_rss_mb"]
    net_ratio = big["peak_minus_dataset_mb"] / small["peak_minus_dataset_mb"]
    targets = [
        target("memory", f"peak RSS minus dataset, {k}N / N (N = {n})", net_ratio, GOAL_RATIO,
               higher_is_better=False, unit="ratio"),
        target("memory", f"total peak RSS, {k}N / N (includes the in-memory dataset)",
               total_ratio, GOAL_RATIO, higher_is_better=False, unit="ratio"),
    ]
    growth = big["peak_rss_mb"] - small["peak_rss_mb"]
    ds_growth = big["dataset_mb"] - small["dataset_mb"]
    work_ratio = ((big["peak_above_imports_mb"] - big["dataset_mb"])
                  / max(small["peak_above_imports_mb"] - small["dataset_mb"], 1e-9))
    return {"method": doc_method(__doc__), "rows": rows,
            "targets": targets,
            "summary": {"total_ratio": total_ratio, "ratio_minus_dataset": net_ratio,
                        "ratio_above_imports_minus_dataset": work_ratio,
                        "peak_growth_mb": growth, "dataset_growth_mb": ds_growth},
            "notes": [
                "peak_above_imports_mb: the peak minus the RSS after importing TensorFlow and "
                "Keras (what the model, the dataset and extraction's buffers add).",
                f"From N to {k}N the peak grew by {growth:.1f} MB while the dataset grew by "
                f"{ds_growth:.1f} MB; the ratio of (peak above imports - dataset), which leaves "
                f"out both the fixed TensorFlow baseline and the dataset, is {work_ratio:.2f}. "
                "The ratios judged above include the TensorFlow baseline (~0.6 GB), which damps "
                "them: read the growth in MB too."]}


def _main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    p.add_argument("--worker", action="store_true", required=True)
    p.add_argument("--npz", required=True)
    p.add_argument("--backbone", required=True)
    p.add_argument("--px", type=int, required=True)
    p.add_argument("--run-dir", required=True)
    a = p.parse_args(argv)
    print(json.dumps(worker(a.npz, a.backbone, a.px, a.run_dir)))


if __name__ == "__main__":
    _main()
