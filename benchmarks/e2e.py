"""End to end: wall time of `make extract` and `make classify` on the default experiment.

With `--e2e` both targets run for real (about 20 minutes) into a fresh temporary run folder
(`RUN=<tmp>`, so an existing `runs/default` is neither reused nor touched; `--e2e-run DIR` runs
into the new folder DIR instead and keeps it, so the timed run is also a run to read). Without it, the
timings already recorded by an earlier run are read from `runs/default/` (extract.json, and the
fit/predict seconds of the results table), and the table says so.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, doc_method, target

DEFAULT_RUN = ROOT / "runs" / "default"
GOAL_S = 600.0   # issue 15: the main job in 10 minutes on this 2-core machine
WHAT = "make extract classify wall time (main job, fresh run folder)"


def _make(target: str, run_dir: Path, timeout: float) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run(["make", target, f"RUN={run_dir}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=timeout, env=dict(os.environ))
    row = {"target": f"make {target}", "source": "measured now (--e2e)",
           "wall_seconds": time.perf_counter() - t0, "returncode": out.returncode}
    if out.returncode:
        row["stderr_tail"] = out.stderr[-1500:]
    return row


def measured(sizes: dict, keep: str = "") -> dict:
    if keep and Path(keep).exists():
        raise FileExistsError(f"--e2e-run {keep} exists; the timed run needs a fresh folder. "
                              f"Move it away (mv {keep} {keep}-old) or name another.")
    run_dir = Path(keep).resolve() if keep else Path(tempfile.mkdtemp(prefix="cutpoint-bench-e2e-"))
    try:
        rows = [_make("extract", run_dir, sizes["timeout_s"])]
        if rows[0]["returncode"] == 0:
            rows.append(_make("classify", run_dir, sizes["timeout_s"]))
            summary = run_dir / "extract.json"
            if summary.exists():
                s = json.loads(summary.read_text())
                rows[0]["images"] = s.get("rows")
                rows[0]["forward_and_store_seconds"] = s.get("seconds")
    finally:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    failed = [r["target"] for r in rows if r["returncode"]]
    if failed:
        raise RuntimeError(f"{', '.join(failed)} failed: {rows[-1].get('stderr_tail', '')}")
    total = sum(r["wall_seconds"] for r in rows)
    where = (f"Ran into {keep}, kept." if keep
             else "Ran in a temporary RUN folder, removed afterwards.")
    return {"rows": rows, "notes": [where],
            "targets": [target("e2e", WHAT, total, GOAL_S, higher_is_better=False, unit="s")]}


def recorded() -> dict:
    """Timings an earlier `make extract` / `make classify` left in runs/default."""
    rows, notes = [], []
    summary = DEFAULT_RUN / "extract.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        rows.append({"target": "make extract", "source": str(summary.relative_to(ROOT)),
                     "images": s.get("rows"), "forward_and_store_seconds": s.get("seconds"),
                     "images_per_second": s.get("images_per_second"),
                     "skipped_as_up_to_date": s.get("skipped")})
        notes.append("extract.json times the forward pass and store writing of the last "
                     "`make extract` (not the backbone training nor the process start-up); if it "
                     "says skipped, that run found the store up to date.")
    table = DEFAULT_RUN / "results.csv"
    if table.exists():
        from cutpoint import results
        classical = [r for r in results.read(table) if r.get("stage") == "classical"]
        if classical:
            fit = sum(r["fit_seconds"] or 0 for r in classical)
            pred = sum(r["predict_seconds"] or 0 for r in classical)
            rows.append({"target": "make classify", "source": str(table.relative_to(ROOT)),
                         "runs": len(classical), "fit_seconds_total": fit,
                         "predict_seconds_total": pred})
            notes.append("make classify: the sum of the fit (search + refit) and predict seconds "
                         "recorded per classical run; I/O and bootstrap CIs are not included.")
    if not rows:
        return {"status": "skipped", "rows": [],
                "notes": ["Nothing recorded in runs/default and --e2e not given: run "
                          "`python -m benchmarks --only e2e --e2e` (about 20 minutes) to measure "
                          "make extract and make classify."]}
    notes.insert(0, "Not measured in this run (pass --e2e): read from the files named in "
                    "'source'.")
    return {"rows": rows, "notes": notes}


def run(sizes: dict, ctx: dict) -> dict:
    out = measured(sizes, ctx.get("e2e_run", "")) if ctx.get("e2e") else recorded()
    peak = ctx.get("peak_gflops")
    out["method"] = doc_method(__doc__) + (f" Matmul peak of this run: {peak:.1f} GFLOP/s."
                                           if peak else "")
    return out
