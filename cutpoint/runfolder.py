"""The run-folder contract: the name of every file and folder the stages keep in `runs/<exp>/`.

    config.toml          the resolved config (`make config`; one per experiment)
    .stage/<stage>.toml  the sections each stage reads (`resolve --stamps`; the Makefile's prerequisites)
    splits.npz           the experiment's rows and their splits (`cutpoint.splits.record_splits`)
    embeddings.h5        the backbone's cuts (`extract`); pixels.h5, the raw-pixel baseline
    extract.json         extraction's stamp: present only after a completed run
    skipped_files.csv    images that could not be decoded; shards/ a distributed extraction's parts
    backbone/            the self-trained backbone (`backbones.train`)
    results.csv          one row per run (`cutpoint.results`); results-archive.csv, moved rows
    classical/<run_id>/  model.joblib, predictions.npz, config.toml, metrics.json
    finetune/<run_id>/   model.keras, predictions.npz, config.toml (and the probe)
    <stage>/done.json    a stage's stamp (classical, finetune, curve, umap); classical/failed.json
    curve/summary.json   the label-efficiency curve's aggregate
    report/              report.md, report.html and the figures; projector/ the UMAP projector

Every module that reads or writes one of these names takes it from here.
"""
from __future__ import annotations

from pathlib import Path

CONFIG = "config.toml"
SPLITS = "splits.npz"
EMBEDDINGS = "embeddings.h5"
PIXELS = "pixels.h5"
STORES = (EMBEDDINGS, PIXELS)          # the embedding stores, in the order stages read them
EXTRACT_STAMP = "extract.json"
SKIPPED_FILES = "skipped_files.csv"
SHARDS = "shards"
BACKBONE = "backbone"
RESULTS = "results.csv"
RESULTS_ARCHIVE = "results-archive.csv"
CLASSICAL, FINETUNE, CURVE, UMAP, REPORT = "classical", "finetune", "curve", "umap", "report"
PROJECTOR = "projector"
DONE, FAILED = "done.json", "failed.json"
CURVE_SUMMARY = "summary.json"
REPORT_MD, REPORT_HTML = "report.md", "report.html"
# inside one run's folder (classical/<run_id>/, finetune/<run_id>/)
MODEL_JOBLIB, MODEL_KERAS = "model.joblib", "model.keras"
PREDICTIONS = "predictions.npz"
METRICS = "metrics.json"
RUN_CONFIG = "config.toml"


def results_csv(run_dir) -> Path:
    return Path(run_dir) / RESULTS


def done_json(run_dir, stage: str) -> Path:
    """A stage's stamp: `<run_dir>/<stage>/done.json`."""
    return Path(run_dir) / stage / DONE


def stores(run_dir) -> list[Path]:
    """The embedding stores present in `run_dir` (embeddings.h5, then pixels.h5)."""
    return [Path(run_dir) / s for s in STORES if (Path(run_dir) / s).exists()]
