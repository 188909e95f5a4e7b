"""The experiment's results table, shared by every stage (BRIEF §8): its columns and its rows.

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
  experiment                        `experiment_id(cfg)`: which experiment definition the row
                                    belongs to; the report compares only rows of the current one
  dataset, split_def, labels_per_class (0 = every label of the train split), n_train (rows of the
  final fit), n_val (rows the selection scored), n_test, n_classes, n_features
  selection                         the rule that chose hyperparameters / epochs / learning rate
  val_accuracy                      the validation score of the chosen setting: what every
                                    "best" in the report is chosen by (never test accuracy)
  accuracy, acc_ci_low, acc_ci_high (95 % bootstrap), macro_f1, log_loss
  fit_seconds, predict_seconds, epochs, trainable_params
  best_params (JSON), notes
  seed, config_hash, code_version
  predictions  path (relative to the run folder) of the per-sample test predictions (.npz:
               ids, y_true, y_pred, proba, classes)
  model        path (relative to the run folder) of the saved model

Rows are built by `build_row` (every stage): the stage passes what it knows — its run id and
stage, the test scores, the split definition, timings, parameters, the files it saved and its own
columns (`classical.stores.store_columns` for a model on one cut of an embedding store) — and the
experiment id, seed, label budget, creation time, config hash and code version come from the
config (`new_row`, the lower level it fills).
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from cutpoint import runfolder as rf
from cutpoint.splits import split_def_hash

COLUMNS = [
    "run_id", "created", "stage", "method", "backbone", "weights", "cut", "layer", "pooling",
    "classifier", "depth", "frozen_blocks", "experiment", "dataset", "split_def",
    "labels_per_class", "n_train", "n_val", "n_test", "n_classes", "n_features", "selection",
    "val_accuracy", "accuracy", "acc_ci_low", "acc_ci_high", "macro_f1", "log_loss",
    "fit_seconds", "predict_seconds", "epochs", "trainable_params", "best_params", "notes",
    "seed", "config_hash", "code_version", "predictions", "model",
]
INTEGER = {"n_train", "n_val", "n_test", "n_classes", "n_features", "epochs", "trainable_params",
           "seed", "frozen_blocks", "labels_per_class"}
NUMERIC = INTEGER | {"accuracy", "acc_ci_low", "acc_ci_high", "macro_f1", "log_loss",
                     "fit_seconds", "predict_seconds", "val_accuracy"}
# Bump when a change to any stage's protocol changes what its numbers mean: rows made under
# another version belong to another experiment and are never compared with today's.
PROTOCOL_VERSION = 3
# The config sections (and keys) that define the experiment, as opposed to the methods run on it.
_EXPERIMENT_KEYS = {"experiment": ("seed",), "dataset": None, "backbone": None, "train": None,
                    "extract": ("cuts", "pooling", "dtype")}


def experiment_id(cfg: dict) -> str:
    """The id of the experiment a config defines: data, splits and seed, backbone and its
    training, extraction, and PROTOCOL_VERSION. Rows with another id are never compared."""
    from cutpoint.provenance import hash_obj
    part = {s: (cfg[s] if keys is None else {k: cfg[s][k] for k in keys})
            for s, keys in _EXPERIMENT_KEYS.items()}
    precision = cfg["extract"].get("precision", "float32")
    if precision != "float32":     # reduced-precision numbers are another experiment; float32
        part["precision"] = precision   # ids stay what they were before the setting existed
    return f"ex-{hash_obj({'protocol': PROTOCOL_VERSION, **part}, 10)}"


def belongs(row: dict, cfg: dict) -> bool:
    return row.get("experiment") == experiment_id(cfg)


def latest(rows) -> list:
    """One row per method: when a method's definition changed (a classifier's grid or solver, a
    fine-tuning version: a new run id), only its newest row (by `created`), in table order."""
    key = lambda r: (r.get("stage"), r.get("method"), r.get("cut"), r.get("classifier"),  # noqa: E731
                     r.get("depth"), r.get("labels_per_class") or 0, r.get("seed"))
    newest = {}
    for r in rows:
        if key(r) not in newest or (r.get("created") or "") >= (newest[key(r)].get("created") or ""):
            newest[key(r)] = r
    keep = {id(r) for r in newest.values()}
    return [r for r in rows if id(r) in keep]


def rank_key(r: dict) -> tuple:
    """Sort key, best first, behind every "best" a report or the curve names: the higher
    validation accuracy; a tie (frequent with a few labels: 0.72 three times among 25 CV rows)
    goes to the smaller representation (fewer features), then the method and cut names. An order
    declared in advance: never timing (a fit-seconds tie-break made two identical runs choose
    differently), never test."""
    v = r.get("val_accuracy")
    return (-(v if v is not None else -1.0), r.get("n_features") or 0, r.get("method") or "",
            r.get("cut") or "", r.get("run_id") or "")


def comparable(rows, cfg) -> list:
    """The rows a report compares: this experiment (`experiment_id`), its seed and its label
    budget, the newest row of each method (`latest`). Older or other rows stay in the table but
    are never mixed in."""
    seed, budget = cfg["experiment"]["seed"], cfg["dataset"].get("labels_per_class", 0)
    return latest([r for r in rows if belongs(r, cfg) and r.get("seed") == seed
                   and (r.get("labels_per_class") or 0) == budget])


def curve_rows(rows, cfg) -> list:
    """This experiment's label-efficiency rows (other budgets or seeds than the main ones), the
    newest row of each method, budget and seed."""
    seed, budget = cfg["experiment"]["seed"], cfg["dataset"].get("labels_per_class", 0)
    return latest([r for r in rows if belongs(r, cfg) and not (
        r.get("seed") == seed and (r.get("labels_per_class") or 0) == budget)])


def read(path) -> list[dict]:
    """Rows as dicts; numeric columns parsed (empty → None). A missing table is empty."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames and not {"run_id", "stage", "accuracy"} <= set(reader.fieldnames):
            raise ValueError(f"{path} is not a cutpoint results table (columns "
                             f"{reader.fieldnames[:6]}…). Move it away; the next run writes a "
                             f"new one.")
        rows = []
        for raw in reader:   # a table of an older version: its missing columns read as empty
            row = {}
            for k in COLUMNS:
                v = raw.get(k) or ""
                if k in NUMERIC:
                    v = None if v == "" else float(v)
                    if v is not None and k in INTEGER:
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
    _write(path, rows)
    return True


def new_row(cfg: dict, **fields) -> dict:
    """A results row for `cfg`'s experiment: every column present (blank by default), with the
    experiment id, creation time, seed, label budget, config hash and code version filled in,
    then `fields` as given. The lower level of `build_row`."""
    from datetime import datetime, timezone

    from cutpoint.config import config_hash
    from cutpoint.provenance import code_version
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise ValueError(f"Unknown results columns {sorted(unknown)}. Valid columns: {COLUMNS}.")
    row = dict.fromkeys(COLUMNS, "")
    row.update(created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
               experiment=experiment_id(cfg), seed=cfg["experiment"]["seed"],
               labels_per_class=cfg["dataset"].get("labels_per_class", 0),
               config_hash=config_hash(cfg), code_version=code_version())
    row.update(fields)
    return row


SCORE_COLUMNS = ("accuracy", "acc_ci_low", "acc_ci_high", "macro_f1", "log_loss")


def build_row(cfg: dict, *, run_id: str, stage: str, scores: dict, split_def,
              fit_seconds=None, predict_seconds=None, best_params=None, run_dir=None,
              predictions=None, model=None, **fields) -> dict:
    """The results row of one run: the one row builder every stage uses.

    scores         the test evaluation (`cutpoint.metrics.classification_metrics`, which
                   `classical.protocol.evaluate` returns too): its SCORE_COLUMNS are copied, a
                   missing one (log_loss of a model without probabilities) is blank
    split_def      the experiment's split definition (written as `splits.split_def_hash`) or
                   that short id already
    fit_seconds, predict_seconds   wall times, written rounded to the millisecond
    best_params    a dict, written as sorted JSON
    predictions, model   the files saved (paths under `run_dir`, written relative to it)
    fields         the stage's own columns (method, backbone, cut, classifier, depth,
                   frozen_blocks, n_train … val_accuracy, selection, notes), as they are
    Everything else comes from the config (`new_row`)."""
    row = {k: scores.get(k) for k in SCORE_COLUMNS}
    row["split_def"] = (split_def_hash(split_def) if isinstance(split_def, dict)
                        else (split_def or ""))
    for key, seconds in (("fit_seconds", fit_seconds), ("predict_seconds", predict_seconds)):
        if seconds is not None:
            row[key] = round(seconds, 3)
    if best_params is not None:
        row["best_params"] = (best_params if isinstance(best_params, str)
                              else json.dumps(best_params, sort_keys=True))
    for key, path in (("predictions", predictions), ("model", model)):
        if path is not None:
            row[key] = str(Path(path).relative_to(run_dir)) if run_dir is not None else str(path)
    return new_row(cfg, run_id=run_id, stage=stage, **row, **fields)


def _write(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(buf.getvalue())
    tmp.replace(path)


def archive(path, cfg: dict) -> tuple[int, Path]:
    """Move the rows of other experiments (other splits, seed, backbone, extraction or protocol
    version) from `path` to `results-archive.csv` beside it. Returns (rows moved, archive)."""
    path = Path(path)
    dest = path.with_name(rf.RESULTS_ARCHIVE)
    rows = read(path)
    keep = [r for r in rows if belongs(r, cfg)]
    moved = [r for r in rows if not belongs(r, cfg)]
    if moved:
        _write(dest, read(dest) + moved)
        _write(path, keep)
    return len(moved), dest
