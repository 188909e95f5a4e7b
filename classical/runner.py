"""The classical stage as a library: `run_stage(config, run_dir)` trains every missing
(store, cut, classifier) of a run folder and records it.

A run is identified by a hash of the classifier (and its registry definition), the store's content
identity (extraction key) and cut, the seed, the validation fraction and the classical config
section without the selection keys (classifiers, cuts, n_jobs, max_in_memory_mb) and, for the
streaming engines, the engine (`classical.distributed.engine_identity`): re-running skips
finished runs, and choosing more classifiers or cuts only adds runs. On Dask (`workers`: a
LocalCluster, `scheduler`: an existing cluster) the searches run across the workers; cuts above
`classical.max_in_memory_mb` are streamed from the store (`classical.distributed`). Each run
writes `classical/<run_id>/{model.joblib, predictions.npz, config.toml, metrics.json}` and
appends one results row. One failing run is logged and the others go on; `done.json` (the
Makefile's target) is then not written, and `failed.json` says why.
"""
from __future__ import annotations

import contextlib
import json
import logging
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from classical import distributed, pipelines, protocol
from classical.bundle import make_bundle
from classical.stores import load_split, plan_cuts, store_columns, store_identity
from cutpoint import config as cconfig
from cutpoint import results
from cutpoint import runfolder as rf
from cutpoint.provenance import hash_obj
from embeddings import store

log = logging.getLogger("classical")
# Choose runs or how they are computed, not a run's result (an engine that changes the result is
# part of the run id through `distributed.engine_identity`).
_SELECTION_KEYS = ("classifiers", "cuts", "n_jobs", "max_in_memory_mb")


def run_id_for(name: str, prov: dict, cut: str, cfg: dict, engine: dict | None = None) -> str:
    section = {k: v for k, v in cfg["classical"].items() if k not in _SELECTION_KEYS}
    ident = {"classifier": name, "definition": pipelines.signature(name),
             "store": store_identity(prov), "cut": cut, "seed": cfg["experiment"]["seed"],
             "val_fraction": cfg["dataset"]["val_fraction"], "classical": section,
             "protocol": results.PROTOCOL_VERSION, **(engine or {})}
    return f"cl-{hash_obj(ident, 12)}"


def _expand_proba(proba, model_classes, n_classes):
    """Probabilities with one column per store class (label i → column i), zeros for classes
    the model never saw, so predictions.npz reads the same for every method."""
    if not proba.size:
        return np.empty((len(proba), 0), dtype=np.float32)
    full = np.zeros((len(proba), n_classes), dtype=np.float32)
    full[:, np.asarray(model_classes, dtype=np.int64)] = proba
    return full


def run_one(name, cfg, run_dir, path, cut, attrs, prov, data, class_names, run_id,
            engine="in-memory", client=None) -> dict:
    """Fit, select, score and save one (store, cut, classifier); returns the results row.
    `data` is the in-memory splits (engine "in-memory") or None (a streaming engine)."""
    import joblib

    ccfg, seed = cfg["classical"], cfg["experiment"]["seed"]
    if engine == "in-memory":
        (Xtr, ytr, _), (Xva, yva, _), (Xte, yte, idte) = data["train"], data["val"], data["test"]
        with protocol.search_on_dask() if client is not None else contextlib.nullcontext():
            model, info = protocol.fit_select(
                name, Xtr, ytr, Xva, yva, seed=seed, n_jobs=ccfg["n_jobs"],
                rbf_max_train=ccfg["rbf_max_train"])
        ev = protocol.evaluate(model, Xte, yte, class_names, n_boot=ccfg["bootstrap"], seed=seed)
    else:
        model, info, ev, yte, idte = distributed.fit_out_of_core(engine, name, cfg, path, cut,
                                                                 class_names, client)
    where = distributed.describe(client)
    info["scheduler"], info["engine"] = where, engine
    info["notes"] = f"{info['notes']} Ran on: {where}, engine {engine}.".strip()
    out = run_dir / rf.CLASSICAL / run_id
    out.mkdir(parents=True, exist_ok=True)
    bundle = make_bundle(model, name, run_id, prov, cut, attrs, class_names, cfg, info)
    joblib.dump(bundle, out / rf.MODEL_JOBLIB, compress=3)
    np.savez_compressed(out / rf.PREDICTIONS, ids=np.asarray(idte, dtype=str), y_true=yte,
                        y_pred=ev["y_pred"],
                        proba=_expand_proba(ev["proba"], model.classes_, len(class_names)),
                        classes=np.asarray(class_names))
    (out / rf.RUN_CONFIG).write_text(cconfig.to_toml(cfg))
    (out / rf.METRICS).write_text(json.dumps(
        {k: v for k, v in ev.items() if k not in ("y_pred", "proba", "classes")}
        | {"selection": info}, indent=1, default=str))
    return results.build_row(
        cfg, run_id=run_id, stage="classical", scores=ev,
        **store_columns(prov, cut, attrs, name, dataset=cfg["dataset"]["name"]),
        n_train=info["n_train"], n_val=info["n_val"], n_test=len(yte),
        n_classes=len(model.classes_), n_features=info["n_features"],
        selection=info["selection"], val_accuracy=round(info["best_val_accuracy"], 6),
        fit_seconds=info["fit_seconds"], predict_seconds=ev["predict_seconds"],
        best_params=info["best_params"], notes=info["notes"], run_dir=run_dir,
        predictions=out / rf.PREDICTIONS, model=out / rf.MODEL_JOBLIB)


def run(cfg: dict, run_dir, classifiers=None, cuts=None, progress=True, workers=0,
        scheduler="", client=None) -> dict:
    """Train every missing (store, cut, classifier); returns the summary written to done.json.
    On Dask (`classical.distributed`) with `client` (a dask.distributed Client of the caller),
    `workers` (a LocalCluster of that many processes) or `scheduler` (an existing cluster's
    address)."""
    if client is not None:
        return _run(cfg, run_dir, classifiers, cuts, progress, client)
    with distributed.client_for(workers, scheduler) as client:
        return _run(cfg, run_dir, classifiers, cuts, progress, client)


def _run(cfg, run_dir, classifiers, cuts, progress, client) -> dict:
    from tqdm import tqdm

    run_dir = Path(run_dir)
    names = list(classifiers or cfg["classical"]["classifiers"])
    for n in names:
        pipelines.get(n)                         # unknown names fail before any work
    plan = plan_cuts(run_dir, list(cuts or cfg["classical"]["cuts"]))
    table = rf.results_csv(run_dir)
    todo = []
    limit = cfg["classical"]["max_in_memory_mb"]
    for path, cut, attrs in plan:
        prov = store.provenance(path)
        mb = distributed.cut_megabytes(path, cut)
        for n in names:
            try:   # a refused engine fails that run only, with its reason
                engine = distributed.engine_for(n, mb, limit, client)
            except ValueError as e:
                engine = e
            ident = (distributed.engine_identity(engine, client, 0 < limit < mb)
                     if isinstance(engine, str) else {})
            todo.append((path, cut, attrs, prov, n, run_id_for(n, prov, cut, cfg, ident), engine))
    summary = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "results": str(table), "runs": []}
    cache = {}
    bar = tqdm(todo, desc="classical", unit="run", disable=not progress, file=sys.stderr)
    for path, cut, attrs, prov, n, run_id, engine in bar:
        bar.set_postfix_str(f"{path.stem}/{cut} {n}")
        item = {"run_id": run_id, "store": path.name, "cut": cut, "classifier": n}
        if results.has_run(table, run_id):
            summary["runs"].append(item | {"status": "skipped"})
            continue
        try:
            if isinstance(engine, Exception):
                raise engine
            if engine != "in-memory":            # streamed from the store: nothing loaded
                data, class_names = None, store.class_names(path)
            else:
                if (path, cut) not in cache:
                    cache.clear()                # one cut's matrices in memory at a time
                    try:
                        data = load_split(path, cut)
                        protocol.validate_inputs(*data["train"][:2], *data["test"][:2])
                        cache[(path, cut)] = (data, store.class_names(path))
                    except Exception as e:       # bad data fails every classifier of the cut
                        cache[(path, cut)] = e
                if isinstance(cache[(path, cut)], Exception):
                    raise cache[(path, cut)]
                data, class_names = cache[(path, cut)]
            row = run_one(n, cfg, run_dir, path, cut, attrs, prov, data, class_names, run_id,
                          engine, client)
            results.append(table, row)
            summary["runs"].append(item | {"status": "new", "accuracy": row["accuracy"],
                                           "fit_seconds": row["fit_seconds"]})
            bar.write(f"{path.stem}/{cut} {n} ({engine}): accuracy {row['accuracy']:.4f} "
                      f"[{row['acc_ci_low']:.4f}, {row['acc_ci_high']:.4f}] in "
                      f"{row['fit_seconds']:.1f} s, best {row['best_params']}")
        except Exception as e:   # one failing run must not stop the others
            log.error("%s/%s %s failed: %s", path.stem, cut, n, e)
            log.debug("%s", traceback.format_exc())
            summary["runs"].append(item | {"status": "failed",
                                           "error": f"{type(e).__name__}: {e}"})
    bar.close()
    summary["failed"] = sum(r["status"] == "failed" for r in summary["runs"])
    out = run_dir / rf.CLASSICAL
    out.mkdir(parents=True, exist_ok=True)
    done, failed = out / rf.DONE, out / rf.FAILED
    if summary["failed"]:
        failed.write_text(json.dumps(summary, indent=1))
        done.unlink(missing_ok=True)             # Make must retry, not see a fresh target
    else:
        failed.unlink(missing_ok=True)
        done.write_text(json.dumps(summary, indent=1))
    return summary


def failure_report(summary: dict, run_dir: Path) -> str:
    """The console lines of a run with failures: each distinct reason once, with the runs it
    stopped (the reason names the fix), and where the full record is."""
    by_reason: dict[str, list[str]] = {}
    for r in summary["runs"]:
        if r["status"] == "failed":
            by_reason.setdefault(r["error"], []).append(f"{Path(r['store']).stem}/{r['cut']} "
                                                        f"{r['classifier']}")
    lines = [f"error: {summary['failed']} of {len(summary['runs'])} classical runs failed "
             f"(details in {run_dir / rf.CLASSICAL / rf.FAILED}; fix the cause below and "
             f"re-run `make classify`, which redoes only the failed runs):"]
    for reason, runs in by_reason.items():
        shown = ", ".join(runs[:6]) + (f" and {len(runs) - 6} more" if len(runs) > 6 else "")
        lines.append(f"  {reason}\n    ({len(runs)} run(s): {shown})")
    return "\n".join(lines)


def run_stage(config_path, run_dir, classifiers=None, cuts=None, progress=True, workers=0,
              scheduler="") -> dict:
    """The stage: load the resolved config, hold the run folder's lock, `run`, and log the
    count of new, reused and failed runs. Returns the summary (`failure_report` words it)."""
    from cutpoint.runlock import run_lock
    cfg = cconfig.load(config_path)
    with run_lock(run_dir, "classical"):
        summary = run(cfg, run_dir, classifiers, cuts, progress=progress, workers=workers,
                      scheduler=scheduler)
    new = sum(r["status"] == "new" for r in summary["runs"])
    skipped = sum(r["status"] == "skipped" for r in summary["runs"])
    log.info("%d new, %d already done, %d failed → %s", new, skipped, summary["failed"],
             rf.results_csv(run_dir))
    return summary
