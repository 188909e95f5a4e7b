"""The label-efficiency curve (BRIEF §13): every method on the same few labels, over seeds.

For each labels-per-class budget b and seed s, ONE stratified subset of the target's train split
is drawn (`cutpoint.splits.budget_subset`: seeded, nested across budgets for the same seed, a
budget above a class's size refused) and recorded in `curve/subsets.npz`. Every method trains on
exactly that subset: the classical models at every cut point and on raw pixels, fine-tuning at
`curve.depths` and from scratch. Selection uses labels inside the budget only — never the
experiment's validation split:
  - b >= curve.holdout_min: a stratified `holdout_fraction` of the subset is held out (the same
    rows for every method of the cell). Classical models and the k = 0 probe refit the chosen
    setting on the whole subset; k >= 1 and scratch train on the rest, the held-out part choosing
    the learning rate and the epoch (early stopping), as the full-budget stage does with val;
  - 2 <= b < holdout_min: classical models and the probe use stratified k-fold cross-validation
    inside the subset (k = min(curve.cv_folds, b)), then a fit on the whole subset; k >= 1 and
    scratch cannot afford k x learning-rate trainings per cell, so they train on the whole
    subset with settings declared before seeing data (the middle learning-rate candidate,
    finetune.epochs epochs, the last one kept);
  - b = 1: no validation is possible; declared settings everywhere
    (`classical.pipelines.FALLBACK`, the same fine-tuning settings).
Few-label epochs repeat their rows to at least `curve.min_steps_per_epoch` batches of
`curve.batch_size` (32: small batches for small subsets, 5x cheaper per epoch than 128 on this
machine), so a 20-image subset is not trained for 8 gradient steps. The test split is scored once per run.
One results row per (budget, seed, method), with `labels_per_class` and `seed`; finished cells
are skipped on rerun, so a killed `make curve` resumes. This module composes the classical and
fine-tuning stages (like prediction from images, it sits above them).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from backbones.registry import is_pixels
from backbones.train import deterministic_ops
from classical import pipelines, protocol
from cutpoint import results
from cutpoint import runfolder as rf
from cutpoint.provenance import hash_obj
from cutpoint.splits import budget_subset, carve_validation

log = logging.getLogger("cutpoint.curve")
CURVE_VERSION = 1
FINETUNE_CELLS_VERSION = 1
SUBSETS = "curve/subsets.npz"


def draw_subsets(train_labels, budgets, seeds, class_names=None) -> dict:
    """{(seed, b): positions into the train rows}, nested across budgets per seed."""
    idx = np.arange(len(train_labels))
    return {(s, b): budget_subset(train_labels, idx, b, s, class_names)
            for s in seeds for b in sorted(budgets)}


def record_subsets(run_dir: Path, subsets: dict, train_ids) -> Path:
    """Write the subsets' sample ids (once); refuse a rerun that would draw other rows."""
    path = run_dir / SUBSETS
    arrays = {f"s{s}_b{b}": np.asarray(train_ids)[pos].astype(str)
              for (s, b), pos in subsets.items()}
    if path.exists():
        with np.load(path) as z:
            for k, v in arrays.items():
                if k in z.files and not np.array_equal(z[k], v):
                    raise ValueError(f"{path} records other rows for {k}: the data or the split "
                                     f"changed. Use another run folder (RUN=…) or `make clean`.")
            arrays = {**{k: z[k] for k in z.files}, **arrays}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def select_and_fit(name, X, y, b, c: dict, seed: int, n_jobs: int):
    """The curve's selection rule for one classical model on one labelled subset."""
    if b >= c["holdout_min"]:
        _, codes = np.unique(y, return_inverse=True)
        fit, val = carve_validation(codes, np.arange(len(y)), c["holdout_fraction"], seed)
        model, info = protocol.fit_select(name, X[fit], y[fit], X[val], y[val], seed=seed,
                                          n_jobs=n_jobs)
        info["selection"] = (f"hyperparameters chosen on a held-out {c['holdout_fraction']:.0%} "
                             f"of the labelled subset; final fit on the whole subset")
        return model, info
    return protocol.fit_select_cv(name, X, y, folds=c["cv_folds"], seed=seed, n_jobs=n_jobs)


def _store():
    from embeddings import store
    return store


def run_classical(cfg: dict, run_dir, budgets=None, seeds=None, progress=True) -> list[dict]:
    """Every (budget, seed, store, cut, classifier) not yet in results.csv. Returns new rows."""
    from tqdm import tqdm

    store = _store()
    run_dir = Path(run_dir)
    c = cfg["curve"]
    budgets = sorted(int(b) for b in (budgets or c["budgets"]))
    seeds = [int(s) for s in (seeds or c["seeds"])]
    names = list(c["classifiers"])
    for n in names:
        pipelines.get(n)
    paths = rf.stores(run_dir)
    if not paths:
        raise FileNotFoundError(f"No embedding store in {run_dir}. Run `make extract` first.")
    table = rf.results_csv(run_dir)
    done = {r["run_id"] for r in results.read(table)}
    _, y_train, ids_train = store.read(paths[0], next(iter(store.cuts(paths[0]))), split="train")
    class_names = store.class_names(paths[0])
    subsets = draw_subsets(y_train, budgets, seeds, class_names)
    record_subsets(run_dir, subsets, ids_train)
    plan = []
    for path in paths:
        prov = store.provenance(path)
        ident = prov.get("extraction_key") or hash_obj(prov.get("split_def"), 12)
        for cut, attrs in store.cuts(path).items():
            if c["cuts"] and cut not in c["cuts"]:
                continue
            for (s, b) in subsets:
                for n in names:
                    rid = "cv-" + hash_obj({"v": CURVE_VERSION, "b": b, "seed": s, "store": ident,
                                            "cut": cut, "clf": pipelines.signature(n),
                                            "rule": {k: c[k] for k in ("holdout_min",
                                                     "holdout_fraction", "cv_folds")},
                                            "protocol": results.PROTOCOL_VERSION}, 12)
                    if rid not in done:
                        plan.append((path, prov, cut, attrs, s, b, n, rid))
    new = []
    cache: dict = {}
    bar = tqdm(plan, desc="curve classical", unit="run", disable=not progress)
    for path, prov, cut, attrs, s, b, n, rid in bar:
        bar.set_postfix_str(f"b={b} seed={s} {path.stem}/{cut} {n}")
        if (path, cut) not in cache:
            cache.clear()
            Xtr, ytr, _ = store.read(path, cut, split="train")
            Xte, yte, idte = store.read(path, cut, split="test")
            cache[(path, cut)] = (Xtr, ytr, Xte, yte)
        Xtr, ytr, Xte, yte = cache[(path, cut)]
        pos = subsets[(s, b)]
        model, info = select_and_fit(n, Xtr[pos], ytr[pos], b, c, s, cfg["classical"]["n_jobs"])
        ev = protocol.evaluate(model, Xte, yte, class_names, n_boot=cfg["classical"]["bootstrap"],
                               seed=s)
        pixels = is_pixels(prov.get("backbone"))
        row = results.new_row(
            cfg, run_id=rid, stage="classical",
            method=f"{'pixels' if pixels else 'frozen'}+{n}", backbone=prov.get("backbone", ""),
            weights=prov.get("weights", ""), cut=cut, layer=attrs.get("layer", ""),
            pooling=attrs.get("pooling", ""), classifier=n,
            frozen_blocks=attrs.get("frozen_blocks", ""), dataset=prov.get("dataset", ""),
            split_def=hash_obj(prov.get("split_def"), 12), labels_per_class=b, seed=s,
            n_train=info["n_train"], n_val=info["n_val"], n_test=len(yte),
            n_classes=len(model.classes_), n_features=info["n_features"],
            selection=info["selection"],
            val_accuracy=None if info["best_val_accuracy"] is None
            else round(info["best_val_accuracy"], 6),
            accuracy=ev["accuracy"], acc_ci_low=ev["acc_ci_low"], acc_ci_high=ev["acc_ci_high"],
            macro_f1=ev["macro_f1"], log_loss=ev["log_loss"],
            fit_seconds=round(info["fit_seconds"], 3),
            predict_seconds=round(ev["predict_seconds"], 3),
            best_params=json.dumps(info["best_params"], sort_keys=True), notes=info["notes"])
        results.append(table, row)
        new.append(row)
    bar.close()
    return new


def _declared_lr(fcfg: dict, depth) -> float:
    lrs = sorted(float(v) for v in fcfg["scratch_learning_rates" if depth == "scratch"
                                         else "learning_rates"])
    return lrs[len(lrs) // 2]


def finetune_rule(depth, b: int, c: dict, fcfg: dict) -> str:
    """The selection rule of one fine-tuning cell, in words (the row's `selection`)."""
    steps = (f"epochs of at least {c['min_steps_per_epoch']} batches of {c['batch_size']}"
             if c["min_steps_per_epoch"] else f"epochs (batches of {c['batch_size']})")
    probe_rule = ("C chosen on a held-out "
                  f"{c['holdout_fraction']:.0%} of the labelled subset" if b >= c["holdout_min"]
                  else "C chosen by cross-validation inside the subset" if b > 1
                  else "C declared in advance (pipelines.FALLBACK: one label per class)")
    if depth == 0:
        return (f"linear probe (logistic regression on the frozen features, {probe_rule}, refit "
                f"on the whole subset) loaded as the softmax head, no gradient training")
    start = ("random init" if depth == "scratch"
             else f"starts from the k = 0 probe's head ({probe_rule}, refit on the whole subset)")
    if b >= c["holdout_min"]:
        lrs = fcfg["scratch_learning_rates" if depth == "scratch" else "learning_rates"]
        return (f"{start}; learning rate chosen among {', '.join(f'{v:g}' for v in lrs)} by "
                f"accuracy on a held-out {c['holdout_fraction']:.0%} of the labelled subset "
                f"after {max(1, fcfg['lr_search_epochs'])} epoch(s) each, continued to at most "
                f"{fcfg['epochs']} {steps} with early stopping on the held-out part (patience "
                f"{fcfg['patience']}), the best epoch restored; weights trained on the other "
                f"{1 - c['holdout_fraction']:.0%}")
    return (f"{start}; too few labels to hold out (b < {c['holdout_min']}): declared settings, "
            f"learning rate {_declared_lr(fcfg, depth):g} (the middle candidate), "
            f"{fcfg['epochs']} {steps}, the last epoch kept; trained on the whole subset")


def _probe_from(model, info, n_classes, seconds):
    """A classical logreg pipeline (scaler + logistic regression) as the fine-tuning probe."""
    from cutpoint.probe import Probe, fold
    kernel, bias = fold(model, n_classes)
    return Probe(model=model, C=float(model[-1].C), val_accuracy=info["best_val_accuracy"],
                 kernel=kernel, bias=bias, n_train=info["n_train"], n_val=info["n_val"],
                 notes=info["notes"], seconds=seconds)


def run_finetune_cells(cfg: dict, run_dir, budgets=None, seeds=None, progress=True) -> list:
    """Every (budget, seed, depth) fine-tuning / scratch cell not yet in results.csv."""
    with deterministic_ops():
        return _run_finetune_cells(cfg, run_dir, budgets, seeds, progress)


def _run_finetune_cells(cfg, run_dir, budgets, seeds, progress) -> list:
    from tqdm import tqdm

    from finetune.finetune import parse_depths
    from finetune.run import Context, depth_columns, run_params

    run_dir = Path(run_dir)
    c, fcfg = cfg["curve"], cfg["finetune"]
    budgets = sorted(int(b) for b in (budgets or c["budgets"]))
    seeds = [int(s) for s in (seeds or c["seeds"])]
    ctx = Context(cfg, run_dir)
    depths = parse_depths(c["depths"] or fcfg["depths"], len(ctx.blocks))
    table = rf.results_csv(run_dir)
    done = {r["run_id"] for r in results.read(table)}
    y_train = ctx.y[ctx.rows["train"]]
    names = list(ctx.target.class_names)
    subsets = draw_subsets(y_train, budgets, seeds, names)
    record_subsets(run_dir, subsets, np.asarray(ctx.target.ids)[ctx.rows["train"]])
    rule = {k: c[k] for k in ("holdout_min", "holdout_fraction", "cv_folds",
                              "min_steps_per_epoch", "batch_size")}
    plan = []
    for (s, b) in subsets:
        for depth in depths:
            stage = "scratch" if depth == "scratch" else "finetune"
            ident = ctx.ident(depth, s, b=b, rule=rule, v=FINETUNE_CELLS_VERSION,
                              protocol=results.PROTOCOL_VERSION)
            rid = "cf-" + hash_obj(ident, 12)
            if rid not in done:
                plan.append((s, b, depth, stage, rid))
    n_test = len(ctx.rows["test"])
    new, probes = [], {}
    bar = tqdm(plan, desc="curve fine-tuning", unit="run", disable=not progress)
    for s, b, depth, stage, rid in bar:
        bar.set_postfix_str(f"b={b} seed={s} {stage} {depth}")
        pos = subsets[(s, b)]
        x, y = ctx.x["train"][pos], y_train[pos]
        hold = b >= c["holdout_min"]
        if hold:
            _, codes = np.unique(y, return_inverse=True)
            fit, val = carve_validation(codes, np.arange(len(y)), c["holdout_fraction"], s)
        probe = None
        if depth != "scratch":
            if (s, b) not in probes:
                probes.clear()
                t0 = time.perf_counter()
                (feats,) = ctx.features(s, x)
                model, info = select_and_fit("logreg", feats, y, b, c, s,
                                             cfg["classical"]["n_jobs"])
                probes[(s, b)] = _probe_from(model, info, ctx.n_classes,
                                             time.perf_counter() - t0)
            probe = probes[(s, b)]
        t1 = time.perf_counter()
        if depth == 0 or hold:
            model, info = ctx.train(depth, (x[fit], y[fit]) if hold else (x, y),
                                    (x[val], y[val]) if hold else None, s, probe=probe,
                                    min_steps=c["min_steps_per_epoch"],
                                    batch_size=c["batch_size"])
        else:
            model, info = ctx.train(depth, (x, y), None, s, probe=probe,
                                    min_steps=c["min_steps_per_epoch"], batch_size=c["batch_size"],
                                    declared_lr=_declared_lr(fcfg, depth))
        fit_s = (0.0 if probe is None else probe.seconds) + time.perf_counter() - t1
        _, _, m, pred_s = ctx.score(model, s)
        n_fit = len(fit) if hold and depth != 0 else len(y)
        params, n_train, notes = run_params(depth, info, probe, n_fit)
        row = results.new_row(
            cfg, run_id=rid, stage=stage, **depth_columns(ctx, depth),
            split_def=hash_obj(ctx.prepared["split_def"], 12), labels_per_class=b, seed=s,
            n_train=n_train, n_val=len(val) if hold else (probe.n_val if depth == 0 else 0),
            n_test=n_test, n_classes=ctx.n_classes,
            selection=finetune_rule(depth, b, c, fcfg), val_accuracy=info["val_accuracy"],
            accuracy=m["accuracy"], acc_ci_low=m["acc_ci_low"], acc_ci_high=m["acc_ci_high"],
            macro_f1=m["macro_f1"], log_loss=m.get("log_loss"), fit_seconds=round(fit_s, 3),
            predict_seconds=round(pred_s, 3), epochs=info["epochs"],
            trainable_params=info["trainable_params"],
            best_params=json.dumps(params, sort_keys=True), notes=notes)
        results.append(table, row)
        new.append(row)
    bar.close()
    return new


def run_curve(cfg: dict, run_dir, budgets=None, seeds=None, progress=True) -> dict:
    """Every cell of the curve (classical models and pixels, then fine-tuning and scratch),
    then the figure and summary."""
    from report.curve import write_curve

    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    from threadpoolctl import threadpool_limits
    # Subsets are small: one BLAS thread per fit. Measured on the default's b = 500 cells
    # (1,600 x 256 logistic regression), threaded BLAS on a loaded 2-core machine was 20-40x
    # slower per L-BFGS iteration than one thread.
    with threadpool_limits(limits=1, user_api="blas"):
        new = run_classical(cfg, run_dir, budgets, seeds, progress)
    t1 = time.perf_counter()
    new += run_finetune_cells(cfg, run_dir, budgets, seeds, progress)
    t2 = time.perf_counter()
    summary = write_curve(run_dir, cfg)
    summary.update(new_rows=len(new), seconds=round(time.perf_counter() - t0, 1),
                   classical_seconds=round(t1 - t0, 1), finetune_seconds=round(t2 - t1, 1))
    rf.done_json(run_dir, rf.CURVE).write_text(json.dumps(summary, indent=1, default=str))
    return summary
