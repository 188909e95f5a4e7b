"""Classical models on stored embeddings: the CLI and its I/O edge.

    python -m classical --list
    python -m classical run --config runs/<exp>/config.toml --run-dir runs/<exp>
                            [--classifiers logreg,knn] [--cuts block2,pixels]
                            [--workers N | --scheduler tcp://host:8786]
    python -m classical predict --model runs/<exp>/classical/<run_id>/model.joblib
                                (--store S.h5 [--split test] | --images DIR|FILE…|NPZ) --out preds.csv

`run` trains every (store, cut, classifier) not yet in `run-dir/results.csv`: the backbone's
cuts in `embeddings.h5` and the raw-pixel pseudo-backbone in `pixels.h5` (when present). A run
is identified by a hash of the classifier (and its registry definition), the store's content
identity (extraction key) and cut, the seed, the validation fraction and the classical config
section without the selection keys (classifiers, cuts, n_jobs, max_in_memory_mb) and, for the
streaming engines, the engine (`classical.distributed.engine_identity`): re-running skips
finished runs, and choosing more classifiers or cuts only adds runs. `--workers N` (a LocalCluster)
or `--scheduler ADDRESS` (an existing cluster) runs the searches on Dask and XGBoost across the
workers; cuts above `classical.max_in_memory_mb` are streamed from the store
(`classical.distributed`). The row's notes say where it ran. Each run writes
`classical/<run_id>/{model.joblib, predictions.npz, config.toml}` and appends one results row.
One failing run is logged and the others go on; the exit code is then 1 and `done.json` (the
Makefile's target) is not written, so `make classify` retries.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import json
import logging
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from classical import distributed, pipelines, protocol
from cutpoint import config as cconfig
from cutpoint import results
from cutpoint.provenance import code_version, hash_obj, package_versions

log = logging.getLogger("classical")
STORES = ("embeddings.h5", "pixels.h5")
# Choose runs or how they are computed, not a run's result (an engine that changes the result is
# part of the run id through `distributed.engine_identity`).
_SELECTION_KEYS = ("classifiers", "cuts", "n_jobs", "max_in_memory_mb")
# The extraction settings a model depends on: predicting from a store that differs in any of
# them would feed the model features it was not trained on.
EXTRACTION_FIELDS = ("backbone", "weights", "cut", "layer", "pooling", "width", "input_size",
                     "resize_method", "preprocess", "channels")


# ----------------------------------------------------------------------------- stores

def _store():
    from embeddings import store   # the only module that touches h5py
    return store


def extraction_record(prov: dict, cut: str, attrs: dict) -> dict:
    """How a cut's features were made: what a saved model must be fed again."""
    binfo = prov.get("backbone_info") or {}
    weights_hash = binfo.get("weights_sha256")
    return {
        "backbone": prov.get("backbone"),
        # The hash identifies the weights wherever the file lives; without one, the source.
        "weights": f"sha256:{weights_hash}" if weights_hash else prov.get("weights"),
        "weights_source": prov.get("weights"),
        "cut": cut, "layer": attrs.get("layer"), "pooling": attrs.get("pooling"),
        "width": attrs.get("width"), "input_size": prov.get("input_size"),
        "resize_method": prov.get("resize_method"), "preprocess": prov.get("preprocess"),
        "channels": prov.get("channels"), "dataset": prov.get("dataset"),
        "extraction_key": prov.get("extraction_key"),
    }


def _store_identity(prov: dict) -> str:
    """The store's content identity: its extraction key, else a hash of its provenance
    without what does not change the numbers (the config of later stages, versions)."""
    if prov.get("extraction_key"):
        return str(prov["extraction_key"])
    return hash_obj({k: v for k, v in prov.items()
                     if k not in ("config", "packages", "code_version", "created")})


def _frozen_blocks(prov: dict, attrs: dict):
    if attrs.get("frozen_blocks") not in (None, ""):
        return int(attrs["frozen_blocks"])
    blocks = list((prov.get("backbone_info") or {}).get("blocks") or prov.get("blocks") or [])
    if attrs.get("layer") in blocks:
        return blocks.index(attrs["layer"]) + 1
    return None


def _no_cut_error(cut, available: dict) -> ValueError:
    names = [c for cs in available.values() for c in cs]
    match = difflib.get_close_matches(cut, names, n=1)
    where = "; ".join(f"{p}: {cs}" for p, cs in available.items())
    hint = f" Did you mean '{match[0]}'?" if match else ""
    return ValueError(f"Cut {cut!r} is not in the embedding stores ({where}).{hint} To add it, "
                      f"extract it with `make extract CUTS={cut}`.")


def plan_cuts(run_dir: Path, wanted=None) -> list[tuple[Path, str, dict]]:
    """[(store path, cut, cut attrs)] to train on, in store then cut order."""
    store = _store()
    paths = [run_dir / s for s in STORES if (run_dir / s).exists()]
    if not (run_dir / STORES[0]).exists():
        raise FileNotFoundError(f"No embedding store at {run_dir / STORES[0]}. Create it with "
                                f"`make extract` (or `python -m extract --config … --run-dir "
                                f"{run_dir}`).")
    available = {p: store.cuts(p) for p in paths}
    plan = [(p, c, a) for p, cs in available.items() for c, a in cs.items()]
    if not wanted:
        return plan
    missing = [c for c in wanted if c not in {c for _, c, _ in plan}]
    if missing:
        raise _no_cut_error(missing[0], {str(p): list(cs) for p, cs in available.items()})
    return [item for item in plan if item[1] in wanted]


def load_split(path, cut) -> dict:
    """{split: (X, y, ids)} of one cut for 'train', 'val' and 'test': the rows the experiment's
    split owner (`cutpoint.splits.prepare`) recorded in the store."""
    store = _store()
    bounds = store.splits(path)
    for name in ("train", "val", "test"):
        if name not in bounds or bounds[name][1] <= bounds[name][0]:
            raise ValueError(f"{path} has no rows in its {name!r} split (splits: "
                             f"{ {k: b - a for k, (a, b) in bounds.items()} }). Classical models "
                             f"are fitted on 'train', selected on 'val' and scored on 'test'; "
                             f"stores of older cutpoint versions have no 'val' split: re-extract "
                             f"with `make extract`.")
    return {s: store.read(path, cut, split=s) for s in ("train", "val", "test")}


# ----------------------------------------------------------------------------- run

def run_id_for(name: str, prov: dict, cut: str, cfg: dict, engine: dict | None = None) -> str:
    section = {k: v for k, v in cfg["classical"].items() if k not in _SELECTION_KEYS}
    ident = {"classifier": name, "definition": pipelines.signature(name),
             "store": _store_identity(prov), "cut": cut, "seed": cfg["experiment"]["seed"],
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


def _label_encoder(model):
    from sklearn.preprocessing import LabelEncoder
    final = model[-1]
    if isinstance(final, pipelines.LabelEncodedClassifier):
        return final.label_encoder_
    return LabelEncoder().fit(model.classes_)


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
    out = run_dir / "classical" / run_id
    out.mkdir(parents=True, exist_ok=True)
    extraction = extraction_record(prov, cut, attrs)
    bundle = {"pipeline": model, "label_encoder": _label_encoder(model),
              "classes": np.asarray(model.classes_), "class_names": list(class_names),
              "classifier": name, "run_id": run_id, "extraction": extraction,
              "store_provenance": {k: v for k, v in prov.items() if k != "config"},
              "config": cfg, "selection": info, "packages": package_versions(),
              "code_version": code_version()}
    joblib.dump(bundle, out / "model.joblib", compress=3)
    np.savez_compressed(out / "predictions.npz", ids=np.asarray(idte, dtype=str), y_true=yte,
                        y_pred=ev["y_pred"],
                        proba=_expand_proba(ev["proba"], model.classes_, len(class_names)),
                        classes=np.asarray(class_names))
    (out / "config.toml").write_text(cconfig.to_toml(cfg))
    (out / "metrics.json").write_text(json.dumps(
        {k: v for k, v in ev.items() if k not in ("y_pred", "proba", "classes")}
        | {"selection": info}, indent=1, default=str))
    pixels = prov.get("backbone") == "pixels"
    split_def = prov.get("split_def")
    return results.new_row(
        cfg, run_id=run_id, stage="classical", method=f"{'pixels' if pixels else 'frozen'}+{name}",
        backbone=prov.get("backbone", ""), weights=prov.get("weights", ""), cut=cut,
        layer=attrs.get("layer", ""), pooling=attrs.get("pooling", ""), classifier=name,
        frozen_blocks=_frozen_blocks(prov, attrs),
        dataset=prov.get("dataset", cfg["dataset"]["name"]),
        split_def=hash_obj(split_def, 12) if isinstance(split_def, dict) else (split_def or ""),
        n_train=info["n_train"], n_val=info["n_val"], n_test=len(yte),
        n_classes=len(model.classes_), n_features=info["n_features"],
        selection=info["selection"], val_accuracy=round(info["best_val_accuracy"], 6),
        accuracy=ev["accuracy"], acc_ci_low=ev["acc_ci_low"], acc_ci_high=ev["acc_ci_high"],
        macro_f1=ev["macro_f1"], log_loss=ev["log_loss"],
        fit_seconds=round(info["fit_seconds"], 3), predict_seconds=round(ev["predict_seconds"], 3),
        best_params=json.dumps(info["best_params"], sort_keys=True), notes=info["notes"],
        predictions=str((out / "predictions.npz").relative_to(run_dir)),
        model=str((out / "model.joblib").relative_to(run_dir)))


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
    store = _store()
    table = run_dir / "results.csv"
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
    out = run_dir / "classical"
    out.mkdir(parents=True, exist_ok=True)
    done, failed = out / "done.json", out / "failed.json"
    if summary["failed"]:
        failed.write_text(json.dumps(summary, indent=1))
        done.unlink(missing_ok=True)             # Make must retry, not see a fresh target
    else:
        failed.unlink(missing_ok=True)
        done.write_text(json.dumps(summary, indent=1))
    return summary


# ----------------------------------------------------------------------------- predict

def predict_embeddings(model_bundle: dict, X):
    """(pred labels, proba with one column per entry of model_bundle["classes"], or (n, 0)).

    The hook for predicting from raw images: embed them with the bundle's recorded extraction
    (model_bundle["extraction"]) and pass the features here."""
    model = model_bundle["pipeline"]
    X = np.asarray(X)
    width = model_bundle.get("extraction", {}).get("width")
    if X.ndim != 2 or (width and X.shape[1] != width):
        raise ValueError(f"The model takes embeddings of shape (n, {width}). Got {X.shape}.")
    protocol._as_xy(X, np.zeros(len(X)), "predict")
    pred, proba, _ = protocol.predict_with_proba(model, X)
    return pred, proba


def check_extraction(model_extraction: dict, store_extraction: dict, store_path) -> None:
    """Refuse a store whose features were made differently from the model's training ones."""
    diff = [f for f in EXTRACTION_FIELDS
            if model_extraction.get(f) != store_extraction.get(f)]
    if diff:
        lines = "; ".join(f"{f}: model {model_extraction.get(f)!r}, store "
                          f"{store_extraction.get(f)!r}" for f in diff)
        raise ValueError(f"{store_path} was not extracted like the model's training embeddings "
                         f"({lines}). Re-extract it with the model's backbone, weights, cut, "
                         f"pooling, input size and preprocessing, or use a model trained on "
                         f"this store.")


def _load_bundle(model_path) -> dict:
    import joblib

    bundle = joblib.load(model_path)
    if not isinstance(bundle, dict) or "pipeline" not in bundle:
        raise ValueError(f"{model_path} is not a model saved by `python -m classical run` "
                         f"(expected a dict with a 'pipeline'). Got {type(bundle).__name__}.")
    return bundle


def _write_predictions(out, bundle, ids, X) -> int:
    pred, proba = predict_embeddings(bundle, X)
    classes = list(bundle["classes"])
    name_of = protocol._class_names_for(np.asarray(classes), bundle["class_names"])
    lookup = dict(zip(classes, name_of))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "pred_label", "pred_class"] + [f"p_{n}" for n in name_of][
            :proba.shape[1]])
        for i, p, row in zip(ids, pred, proba if proba.size else [[]] * len(ids)):
            w.writerow([i, p, lookup[p]] + [f"{v:.6g}" for v in row])
    return len(ids)


def predict(model_path, store_path, out, split="test") -> int:
    """Apply a saved model to one split of a store; write id, prediction and probabilities."""
    store = _store()
    bundle = _load_bundle(model_path)
    cut = bundle["extraction"]["cut"]
    available = store.cuts(store_path)
    if cut not in available:
        raise _no_cut_error(cut, {str(store_path): list(available)})
    check_extraction(bundle["extraction"],
                     extraction_record(store.provenance(store_path), cut, available[cut]),
                     store_path)
    X, _, ids = store.read(store_path, cut, split=split)
    return _write_predictions(out, bundle, ids, X)


def predict_images(model_path, images_path, out) -> int:
    """Apply a saved model to new images — an .npz, a folder of unlabelled images (flat or
    not) or a list of image files — embedded exactly as the model's training store was: same
    backbone, weights, cut, pooling, input size, preprocessing, channels. Files that cannot be
    decoded are skipped, never fatal: listed with the reason in `<out>.skipped.csv`."""
    import warnings

    from cutpoint import datasets
    from backbones.embed import embed_images

    bundle = _load_bundle(model_path)
    paths = [images_path] if isinstance(images_path, (str, Path)) else list(images_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", datasets.DatasetWarning)   # reported below instead
        if len(paths) == 1 and str(paths[0]).endswith(".npz"):
            ds = datasets.load("npz", str(paths[0]))
        else:
            ds = datasets.load_unlabelled(paths)
    report = skipped_path(out)
    if ds.skipped:
        ds.write_skipped_report(report)
        log.warning("skipped %d file(s) that could not be decoded: listed in %s",
                    len(ds.skipped), report)
    else:
        report.unlink(missing_ok=True)
    X = embed_images(bundle["store_provenance"], bundle["extraction"]["cut"], ds)
    return _write_predictions(out, bundle, list(ds.ids), X)


def skipped_path(out) -> Path:
    """Where predict lists the files it skipped: preds.csv → preds.skipped.csv."""
    out = Path(out)
    return out.with_name(f"{out.stem}.skipped.csv")


# ----------------------------------------------------------------------------- CLI

def failure_report(summary: dict, run_dir: Path) -> str:
    """The console lines of a run with failures: each distinct reason once, with the runs it
    stopped (the reason names the fix), and where the full record is."""
    by_reason: dict[str, list[str]] = {}
    for r in summary["runs"]:
        if r["status"] == "failed":
            by_reason.setdefault(r["error"], []).append(f"{Path(r['store']).stem}/{r['cut']} "
                                                        f"{r['classifier']}")
    lines = [f"error: {summary['failed']} of {len(summary['runs'])} classical runs failed "
             f"(details in {run_dir / 'classical' / 'failed.json'}; fix the cause below and "
             f"re-run `make classify`, which redoes only the failed runs):"]
    for reason, runs in by_reason.items():
        shown = ", ".join(runs[:6]) + (f" and {len(runs) - 6} more" if len(runs) > 6 else "")
        lines.append(f"  {reason}\n    ({len(runs)} run(s): {shown})")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m classical", description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="describe the registered pipelines")
    sub = p.add_subparsers(dest="cmd")
    r = sub.add_parser("run", help="train/score every missing (store, cut, classifier)")
    r.add_argument("--config", required=True, help="resolved config (runs/<exp>/config.toml)")
    r.add_argument("--run-dir", required=True)
    r.add_argument("--classifiers", default="", help="comma-separated registry names")
    r.add_argument("--cuts", default="", help="comma-separated cut names (pixels included)")
    r.add_argument("--no-progress", action="store_true")
    dask = r.add_mutually_exclusive_group()
    dask.add_argument("--workers", type=int, default=0,
                      help="run on a Dask LocalCluster of N single-threaded worker processes")
    dask.add_argument("--scheduler", default="",
                      help="address of an existing Dask scheduler (dask-jobqueue, Kubernetes); "
                           "its workers must see the run folder")
    q = sub.add_parser("predict", help="apply a saved model to a store's split, or to new images")
    q.add_argument("--model", required=True)
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", help="an embedding store extracted like the model's")
    src.add_argument("--images", nargs="+",
                     help="new images: a folder of images (flat or not; unlabelled), image "
                          "files, or an .npz")
    q.add_argument("--split", default="test")
    q.add_argument("--out", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.list:
        print(pipelines.describe())
        return 0
    if args.cmd is None:
        p.print_help()
        return 2
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    try:
        if args.cmd == "run":
            from cutpoint.runlock import run_lock
            cfg = cconfig.load(args.config)
            with run_lock(args.run_dir, "classical"):
                summary = run(cfg, args.run_dir, split(args.classifiers) or None,
                              split(args.cuts) or None, progress=not args.no_progress,
                              workers=args.workers, scheduler=args.scheduler)
            new = sum(r["status"] == "new" for r in summary["runs"])
            skipped = sum(r["status"] == "skipped" for r in summary["runs"])
            log.info("%d new, %d already done, %d failed → %s", new, skipped,
                     summary["failed"], Path(args.run_dir) / "results.csv")
            if summary["failed"]:
                print(failure_report(summary, Path(args.run_dir)), file=sys.stderr)
            return 1 if summary["failed"] else 0
        n = (predict(args.model, args.store, args.out, args.split) if args.store
             else predict_images(args.model, args.images, args.out))
        log.info("%d predictions → %s", n, args.out)
        if args.images and skipped_path(args.out).exists():
            print(f"skipped {sum(1 for _ in open(skipped_path(args.out))) - 1} file(s) that "
                  f"could not be decoded: listed in {skipped_path(args.out)}", file=sys.stderr)
        return 0
    except (ValueError, FileNotFoundError) as e:   # user-input errors: the message is the fix
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
