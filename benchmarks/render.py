"""results.json → results.md: the machine, the targets, then one table per section."""
from __future__ import annotations

import json

TITLES = {"peak": "Matmul peak (TensorFlow float32)", "extraction": "Extraction throughput",
          "resize": "Extraction with resize vs pre-resized",
          "depthwise": "Depthwise backbone (MobileNetV2) under TF/oneDNN settings",
          "sweep": "One-pass k-cut sweep vs the naive per-cut loop",
          "memory": "Peak memory, N vs 6N images", "hdf5": "HDF5 store: write/read speed and size",
          "classical": "Classical pipelines: search + refit and predict time",
          "scale": "Out of core on Dask: peak memory per worker, 1 vs 2 workers",
          "classical_wide": "Classical: the six classifiers on wide embeddings, full size",
          "e2e": "End to end: make extract / make classify"}


def fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v == 0:
            return "0"
        a = abs(v)
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.0f}"
        if a >= 10:
            return f"{v:.1f}"
        if a >= 0.01:
            return f"{v:#.3g}"
        return f"{v:.2e}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {fmt(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v)
    return str(v).replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict], columns=None) -> list[str]:
    if not rows:
        return ["(no rows)"]
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    out = ["| " + " | ".join(c.replace("_", " ") for c in cols) + " |",
           "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return out


def markdown(res: dict) -> str:
    m = res["machine"]
    v = m.get("versions", {})
    lines = [
        "# cutpoint benchmarks", "",
        f"Mode: **{res['mode']}**, started {res['started']}, {res['seconds']:.0f} s in all. "
        "Written by `python -m benchmarks` (`make bench`); every number is in results.json.", "",
        "## Machine", "",
        *table([{"CPU": m.get("cpu_model"), "logical CPUs": m.get("logical_cpus"),
                 "usable CPUs": m.get("usable_cpus"), "SIMD": m.get("simd"),
                 "memory GB": m.get("memory_gb"), "TensorFlow": v.get("tensorflow"),
                 "Keras": v.get("keras"), "scikit-learn": v.get("scikit-learn"),
                 "XGBoost": v.get("xgboost"), "h5py / HDF5": f"{v.get('h5py')} / {v.get('hdf5')}",
                 "NumPy": v.get("numpy"), "Python": m.get("python")}]),
        "",
    ]
    if res.get("mode") == "quick":
        lines += ["**Quick mode: tiny sizes for a smoke test; these numbers mean nothing.**", ""]
    lines += ["## Targets", ""]
    lines += table([{"section": t["section"], "what": t["what"],
                     "goal": ("≥ " if t["higher_is_better"] else "≤ ") + fmt(float(t["goal"]))
                     + (f" {t['unit']}" if t.get("unit") else ""),
                     "measured": fmt(t["value"]), "verdict": t["verdict"]}
                    for t in res.get("targets", [])])
    lines.append("")
    for name, sec in res["sections"].items():
        lines += [f"## {TITLES.get(name, name)}", ""]
        status = sec.get("status")
        if status == "error":
            lines += [f"**Failed** after {sec.get('seconds', 0):.1f} s: `{fmt(sec.get('error'))}` "
                      "(traceback in results.json).", ""]
            continue
        if sec.get("method"):
            lines += [f"Method: {sec['method']}", ""]
        if status == "skipped":
            lines += ["Skipped.", ""]
        if sec.get("rows"):
            lines += table(sec["rows"]) + [""]
        for note in sec.get("notes", []):
            lines.append(f"- {note}")
        if sec.get("notes"):
            lines.append("")
        lines += [f"_Section time: {sec.get('seconds', 0):.1f} s._", ""]
    return "\n".join(lines)


def write(res: dict, out_dir) -> tuple:
    from pathlib import Path
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    j, md = out_dir / "results.json", out_dir / "results.md"
    j.write_text(json.dumps(res, indent=2, default=str) + "\n")
    md.write_text(markdown(res))
    return j, md
