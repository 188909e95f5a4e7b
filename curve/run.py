"""The label-efficiency curve (BRIEF §13): every method on the same few labels, over seeds.

For each labels-per-class budget b and seed s, ONE stratified subset of the target's train split
is drawn (`cutpoint.splits.budget_subset`: seeded, nested across budgets for the same seed, a
budget above a class's size refused) and recorded in `curve/subsets.npz`. Every method trains on
exactly that subset: the classical models at every cut point and on raw pixels (fine-tuning and
scratch cells: not built yet — the report's curve shows the families that have rows). Selection uses labels inside the budget only — never the
experiment's validation split:
  - b >= curve.holdout_min: a stratified `holdout_fraction` of the subset is held out, the
    chosen setting is refitted on the whole subset;
  - 2 <= b < holdout_min: stratified k-fold cross-validation inside the subset
    (k = min(curve.cv_folds, b)), then a fit on the whole subset;
  - b = 1: no validation is possible; the settings declared before seeing data are used
    (`classical.pipelines.FALLBACK`).
The test split is scored once per run. One results row per (budget, seed, method), with
`labels_per_class` and `seed`; finished cells are skipped on rerun, so a killed `make curve`
resumes. This module composes the classical and fine-tuning stages (like prediction from images,
it sits above them).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from classical import pipelines, protocol
from cutpoint import results
from cutpoint.provenance import hash_obj
from cutpoint.splits import budget_subset, carve_validation

log = logging.getLogger("cutpoint.curve")
CURVE_VERSION = 1
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
    paths = [run_dir / f for f in ("embeddings.h5", "pixels.h5") if (run_dir / f).exists()]
    if not paths:
        raise FileNotFoundError(f"No embedding store in {run_dir}. Run `make extract` first.")
    table = run_dir / "results.csv"
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
        pixels = prov.get("backbone") == "pixels"
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


def run_curve(cfg: dict, run_dir, budgets=None, seeds=None, progress=True) -> dict:
    """The curve's cells (today: the classical models and pixels; fine-tuning cells are not
    built yet), then the figure and summary."""
    from report.curve import write_curve

    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    new = run_classical(cfg, run_dir, budgets, seeds, progress)
    summary = write_curve(run_dir, cfg)
    summary.update(new_rows=len(new), seconds=round(time.perf_counter() - t0, 1))
    (run_dir / "curve" / "done.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
