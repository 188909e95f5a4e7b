"""The extract stage: embed the experiment's target data at every cut point of the backbone, then
the raw-pixel baseline, each into its own store (`embeddings.h5`, `pixels.h5`).

Both go through the same plan and row writing (`extract.plan`); a backbone set to weights = "self"
is trained first (or reused, `backbones.train.ensure_self_trained`). `extract.json` is written
last, so its presence means the stage completed (the Makefile's target).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from backbones.inputs import apply_channels
from backbones.pixels import PIXELS
from backbones.train import ensure_self_trained
from cutpoint import runfolder as rf
from cutpoint.splits import prepare
from extract.distributed import extract_sharded
from extract.plan import extract_store

log = logging.getLogger("cutpoint.extract")


def extract(cfg: dict, run_dir, prepared=None, workers: int = 0, scheduler: str = "") -> dict:
    """Embed the experiment's target data at every requested cut point. Returns a summary.

    workers > 1 (or a Dask scheduler address) shards the rows over Dask workers, each writing its
    own store, then joins the shards (see `extract.distributed`).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    stamp = run_dir / rf.EXTRACT_STAMP   # the Makefile's target: present only after a completed run
    stamp.unlink(missing_ok=True)
    prepared = apply_channels(cfg, prepared or prepare(cfg, run_dir=run_dir))
    weights = cfg["backbone"]["weights"]
    if weights == "self":
        weights = str(ensure_self_trained(cfg, run_dir, prepared))
    skipped = prepared["target"].skipped
    report = run_dir / rf.SKIPPED_FILES
    if skipped:
        prepared["target"].write_skipped_report(report)
        log.warning("%d unreadable files were skipped; they are listed in %s.", len(skipped), report)
    else:
        report.unlink(missing_ok=True)   # a report from an earlier scan would no longer be true
    path = run_dir / rf.EMBEDDINGS
    if workers > 1 or scheduler:
        summary = extract_sharded(cfg, run_dir, weights, prepared, path, workers, scheduler)
    else:
        summary = extract_store(cfg, path, weights, prepared)
    if cfg["extract"].get("pixels", True):
        summary["pixels"] = extract_store(cfg, run_dir / rf.PIXELS, "none", prepared, PIXELS)
    summary["skipped_files"] = len(skipped)
    summary["skipped_report"] = str(report) if skipped else ""
    tmp = stamp.with_name(stamp.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(stamp)                 # written last, atomically: the stage is complete
    return summary
