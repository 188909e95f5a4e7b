"""The experiment's results table, shared by the classical and finetune stages (BRIEF §8).

One CSV per experiment (`runs/<exp>/results.csv`), one row per run, columns `COLUMNS` in this
order. A row is keyed by `run_id` (a hash of everything that defines the run): appending a
`run_id` that is already present is a no-op, so re-running a stage never duplicates a row.
Writes go to a temporary file that replaces the table atomically, so an interrupted run leaves
the previous table intact.

Columns
  run_id, created, stage            stage: classical | finetune | scratch
  method                            e.g. "frozen+logreg", "finetune k=2", "scratch"
  backbone, weights, cut, layer, pooling
  classifier, depth                 classifier name (classical) / depth k, "all" (finetune)
  frozen_blocks                     backbone blocks kept frozen (Yosinski's n): classical at the
                                    cut after block i → i; fine-tuning at depth k → n_blocks - k;
                                    scratch → 0. The x axis of the accuracy-vs-depth figure.
  dataset, split_def, n_train, n_val, n_test, n_classes, n_features
  accuracy, acc_ci_low, acc_ci_high (95 % bootstrap), macro_f1, log_loss
  fit_seconds, predict_seconds, epochs, trainable_params
  best_params (JSON), notes
  seed, config_hash, code_version
  predictions  path (relative to the run folder) of the per-sample test predictions (.npz:
               ids, y_true, y_pred, proba, classes)
  model        path (relative to the run folder) of the saved model
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

COLUMNS = [
    "run_id", "created", "stage", "method", "backbone", "weights", "cut", "layer", "pooling",
    "classifier", "depth", "frozen_blocks", "dataset", "split_def", "n_train", "n_val", "n_test", "n_classes",
    "n_features", "accuracy", "acc_ci_low", "acc_ci_high", "macro_f1", "log_loss",
    "fit_seconds", "predict_seconds", "epochs", "trainable_params", "best_params", "notes",
    "seed", "config_hash", "code_version", "predictions", "model",
]
NUMERIC = {"n_train", "n_val", "n_test", "n_classes", "n_features", "accuracy", "acc_ci_low",
           "acc_ci_high", "macro_f1", "log_loss", "fit_seconds", "predict_seconds", "epochs",
           "trainable_params", "seed", "frozen_blocks"}


def read(path) -> list[dict]:
    """Rows as dicts; numeric columns parsed (empty → None). A missing table is empty."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames and list(reader.fieldnames) != COLUMNS:
            missing = [c for c in COLUMNS if c not in reader.fieldnames]
            if missing:
                raise ValueError(f"{path} is not a cutpoint results table: columns {missing} are "
                                 f"missing. Move it away; the next run writes a new one.")
        rows = []
        for raw in reader:
            row = {}
            for k in COLUMNS:
                v = raw.get(k, "")
                if k in NUMERIC:
                    v = None if v in ("", None) else float(v)
                    if v is not None and k in ("n_train", "n_val", "n_test", "n_classes",
                                               "n_features", "epochs", "trainable_params", "seed",
                                               "frozen_blocks"):
                        v = int(v)
                row[k] = v
            rows.append(row)
    return rows


def has_run(path, run_id: str) -> bool:
    return any(r["run_id"] == run_id for r in read(path))


def append(path, row: dict) -> bool:
    """Append `row` unless its run_id is already present. Returns True when written."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"Unknown results columns {sorted(unknown)}. Valid columns: {COLUMNS}.")
    if not row.get("run_id"):
        raise ValueError("A results row needs a non-empty 'run_id'.")
    path = Path(path)
    rows = read(path)
    if any(r["run_id"] == row["run_id"] for r in rows):
        return False
    rows.append(row)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(buf.getvalue())
    tmp.replace(path)
    return True
