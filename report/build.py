"""The side-by-side report (BRIEF §8): `build_report(run_dir, cfg)` → ``report/report.md``.

Everything comes from files the other stages left in the run folder: the results table, each
run's test predictions (.npz), the embedding store's class names and the UMAP summary. A missing
piece (no fine-tuning yet, no UMAP, a dataset that can't be loaded for the galleries) becomes a
sentence in the report saying what to run, never a failure: a half-finished experiment is still
worth reading.

The pieces: `report.inputs` (predictions, class names, gallery images), `report.tables`
(formats, the results table), `report.analysis` (best rows, McNemar tests, the summary),
`report.sections` (the sections with figures), `report.plots` and `report.curve` (figures).
"""
from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from cutpoint import results
from cutpoint import runfolder as rf
from cutpoint.provenance import code_version
from report import curve as rcurve
from report import plots
from report.analysis import best_of, mcnemar_tests, summary
from report.inputs import class_names_of, load_predictions
from report.sections import (best_models_section, galleries_section, mcnemar_section,
                             umap_section)
from report.tables import results_table


def build_report(run_dir, cfg, images_for_ids: Callable | None = None, log=print) -> Path:
    """Write ``<run_dir>/report/report.md`` (+ .html and PNGs); returns the Markdown path.

    `images_for_ids(ids) -> uint8 array` supplies gallery images; by default the configured
    dataset is loaded, and if that fails the report says so and has no galleries.
    """
    run_dir = Path(run_dir)
    table = rf.results_csv(run_dir)
    every = [r for r in results.read(table) if r.get("accuracy") is not None]
    rows = results.comparable(every, cfg)
    if not rows:
        raise FileNotFoundError(
            f"No results of this experiment in {table} ({len(every)} rows of other experiments). "
            f"Run `make classify` (and `make finetune`) first, or pass the right --run-dir.")
    others = len(every) - len(rows) - len(results.curve_rows(every, cfg))   # other experiments,
    # or superseded definitions of a method (`results.latest`)
    out = run_dir / rf.REPORT
    out.mkdir(parents=True, exist_ok=True)
    names = class_names_of(run_dir, rows)
    best = {s: best_of(rows, s) for s in ("classical", "finetune", "scratch")}
    best["pixels"] = best_of(rows, "classical", pixels=True)
    preds = {s: load_predictions(run_dir, r, names) for s, r in best.items() if r}

    title = f"cutpoint report — {cfg['experiment']['name']}"
    d = cfg["dataset"]
    md = [f"# {title}", "",
          f"Dataset `{d['name']}` (target classes {d['target_classes'] or 'all'}), "
          f"backbone `{cfg['backbone']['name']}` (weights `{cfg['backbone']['weights']}`), "
          f"seed {cfg['experiment']['seed']}, experiment `{results.experiment_id(cfg)}`: "
          f"{len(rows)} runs. Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by "
          f"cutpoint {code_version()}.", "",
          "**How winners are chosen.** Every \"best\" below (best frozen cut and classifier, best "
          "fine-tuning depth, best overall) is the row with the highest **validation** accuracy "
          "(`val_accuracy`, the score its own selection used); test accuracy is reported, never "
          "used to choose. The significance tests compare pairs fixed before test was read.", ""]
    if others:
        md += [f"{others} older row(s) in results.csv belong to other experiments (other splits, "
               f"seed, backbone, extraction or protocol version) or to a superseded definition "
               f"of a method (only each method's newest row is compared) and are not compared "
               f"here; `make archive-results` moves other experiments' rows to "
               f"results-archive.csv.", ""]
    tests = mcnemar_tests(rows, best, run_dir, names)
    md += ["## What it says", "", summary(rows, best, tests), ""]

    md += ["## Results", "",
           "Sorted by validation accuracy (the selection score). Test-split accuracy with its "
           "95 % bootstrap CI. *n* = backbone blocks transferred and kept frozen (Yosinski's n): "
           "the cut after block n for frozen features + a classical model; all blocks but the "
           "top k for fine-tuning at depth k; 0 from scratch. *train rows* = rows of the final "
           "fit (\"subset\": a stratified subset, see the run's notes); *rule* = how that row's "
           "hyperparameters / epochs were chosen.", "", results_table(rows), ""]

    plots.accuracy_vs_depth(rows, out / "accuracy_vs_depth.png")
    md += ["## Accuracy vs depth", "",
           "Frozen features (one line per classical model, across cut points) against fine-tuning "
           "with the top blocks unfrozen, and training from scratch (dashed, CI shaded).", "",
           "![accuracy vs depth](accuracy_vs_depth.png)", ""]
    if not best["finetune"]:
        md += ["No fine-tuning results yet: run `make finetune` to add the fine-tuning line.", ""]
    curve_md = rcurve.section(run_dir, cfg)
    if "curve.png" in "".join(curve_md):
        rcurve.write_curve(run_dir, cfg)     # the figure from the rows, always current
    md += curve_md
    plots.cost(rows, out / "cost.png")
    md += ["## Cost", "", "Accuracy against fit wall time (log scale); marker area grows with the "
           "number of trainable parameters where the stage recorded it.", "",
           "![cost](cost.png)", ""]

    md += mcnemar_section(best, tests)
    md += best_models_section(out, best, preds, names)
    md += galleries_section(out, cfg, best, preds, names, images_for_ids, log)
    md += umap_section(run_dir, out)

    path = out / rf.REPORT_MD
    text = "\n".join(md).rstrip() + "\n"
    path.write_text(text)
    (out / rf.REPORT_HTML).write_text(to_html(text, title))
    return path


def to_html(markdown_text: str, title: str) -> str:
    """Markdown → a standalone HTML page (markdown-it with tables; plain <pre> if unavailable)."""
    try:
        from markdown_it import MarkdownIt
        body = MarkdownIt("commonmark").enable("table").render(markdown_text)
    except ImportError:
        body = f"<pre>{html.escape(markdown_text)}</pre>"
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
             "padding:2px 6px}img{max-width:100%}")
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>\n{body}</body></html>\n")
