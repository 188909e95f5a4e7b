"""The finetune stage: a depth sweep plus the scratch baseline, one results row per run.

k = 0 is the linear probe (`cutpoint.probe`): the train and val rows are embedded once through the
frozen backbone exactly as the head sees them (inference mode, no augmentation, the fine-tuning
preprocessing, GAP when spatial), a logistic regression is fitted with C chosen on val and refitted
on train + val, and its weights (standardisation folded in) become the Keras head. Every k >= 1
starts from that head. Reproducible on CPU: TF op determinism is on while the stage runs, every
build is preceded by a seed derived from (seed, depth), every training run gets a FRESH tf.data
pipeline seeded from (seed, depth, learning rate), so a depth's numbers do not depend on which
depths ran before it in the process.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from backbones import registry
from backbones.inputs import apply_channels, input_shape_for
from backbones.train import batches, deterministic_ops, ensure_self_trained
from backbones.weights import load_backbone, with_precision
from cutpoint import config as cconfig
from cutpoint import results
from cutpoint import runfolder as rf
from cutpoint.metrics import classification_metrics
from cutpoint.provenance import hash_obj
from cutpoint.probe import PROBE_RULE, fit_probe
from cutpoint.splits import prepare
from finetune.finetune import (build_model, feature_model, parse_depths, run_seed, save_run,
                               set_depth, timed_predict, train_at_depth)

log = logging.getLogger("cutpoint.finetune")
# Part of every run id: bump it when a change to the training code changes the numbers, so
# finished runs are redone rather than skipped.
FINETUNE_VERSION = 3
# Training rows are shuffled within a buffer of at most this many (memory; self-training: all).
SHUFFLE_BUFFER = 20000


def _selection(depth, fcfg) -> str:
    if depth == 0:
        return (PROBE_RULE + "; loaded as the softmax head of the frozen backbone "
                "(standardisation folded into its weights), no gradient training")
    lrs = fcfg["scratch_learning_rates" if depth == "scratch" else "learning_rates"]
    start = "random init" if depth == "scratch" else "starts from the k = 0 probe's head"
    choice = (f"learning rate chosen among {', '.join(f'{v:g}' for v in lrs)} by val accuracy "
              f"after {max(1, fcfg['lr_search_epochs'])} epoch(s) each (ties: the lower val loss), "
              "the chosen run continued" if len(lrs) > 1 else f"learning rate {lrs[0]:g}")
    probe = (" (the k = 0 probe refits on train + val)" if depth != "scratch" else "")
    return (f"{start}; {choice} to at most {fcfg['epochs']} epochs, the epoch of the lowest val "
            f"loss restored (early stopping, patience {fcfg['patience']}); final model trained "
            f"on train only, val used for the learning-rate choice and early stopping{probe}")


def run_identity(cfg: dict, depth, bprov: dict, input_shape, split_def) -> dict:
    """Everything that decides a fine-tuning run's numbers (its run id is a hash of it)."""
    precision = cfg["extract"].get("precision", "float32")
    return {"version": FINETUNE_VERSION, "stage": "scratch" if depth == "scratch" else "finetune",
            "depth": depth, "backbone": cfg["backbone"]["name"],
            "weights": bprov.get("weights_sha256", bprov.get("weights")),
            "input_shape": list(input_shape), "split_def": split_def,
            "finetune": cfg["finetune"], "seed": cfg["experiment"]["seed"],
            # float32: the identity of the runs made before the setting existed
            **({"precision": precision} if precision != "float32" else {})}


def run_finetune(cfg: dict, run_dir, prepared=None, depths=None) -> list[dict]:
    """Run every requested depth not already in the results table. Returns the new rows."""
    with deterministic_ops():
        return _run_finetune(cfg, run_dir, prepared, depths)


class Context:
    """What every fine-tuning run on one experiment shares: the experiment's images and labels
    per split, the backbone (its spec, input shape, weights source) and the pipelines. Built
    once per stage run; the full-budget stage (`run_finetune`) and the label-efficiency curve
    (`curve.run`, on subsets of the train split) both train through it."""

    def __init__(self, cfg: dict, run_dir, prepared=None):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.fcfg, bcfg = cfg["finetune"], cfg["backbone"]
        self.prepared = apply_channels(cfg, prepared or prepare(cfg, run_dir=self.run_dir))
        target = self.target = self.prepared["target"]
        weights = bcfg["weights"]
        if weights == "self":
            weights = str(ensure_self_trained(cfg, self.run_dir, self.prepared))
        self.weights, self.name = weights, bcfg["name"]
        self.spec = registry.get(bcfg["name"])
        self.input_shape = input_shape_for(self.spec, target.image_shape,
                                           bcfg.get("input_size", 0))
        _, _, self.bprov = load_backbone(bcfg["name"], weights=weights,
                                         input_shape=self.input_shape)
        self.blocks = list(self.spec.blocks)
        # the experiment's splits, carved once by cutpoint.splits.prepare (never here)
        self.rows = {s: np.flatnonzero(np.asarray(target.split) == s)
                     for s in ("train", "val", "test")}
        self.y = np.asarray(target.labels)
        size = None if target.image_shape is not None else self.input_shape[:2]  # mixed sizes
        self.resize_method = bcfg["resize_method"]
        self.x = {s: target.images(i, size=size, method=self.resize_method)
                  for s, i in self.rows.items()}
        self.n_classes = len(target.class_names)
        self.precision = cfg["extract"].get("precision", "float32")  # extraction's compute

    def pipeline(self, x, y, train: bool, seed=None, min_steps=0, batch_size=None):
        """A FRESH pipeline per call, never one shared (and advanced) across runs: 'train' rows
        shuffled + augmented with `seed`; otherwise plain, in order. batch_size: the training
        batch (default finetune.batch_size)."""
        mk = dict(spec=self.spec, input_shape=self.input_shape, resize_method=self.resize_method)
        if train:   # a batch is never larger than the rows (a 5-image subset: batches of 5)
            return batches(x, y, augment=self.fcfg["augment"], shuffle=True, seed=seed,
                           min_steps=min_steps, max_shuffle_buffer=SHUFFLE_BUFFER,
                           batch_size=min(batch_size or self.fcfg["batch_size"], len(x)), **mk)
        return batches(x, y, batch_size=self.fcfg["batch_size"], **mk)

    def split(self, name):
        """(images, labels) of one of the experiment's splits."""
        return self.x[name], self.y[self.rows[name]]

    def load_base(self, trained=True):
        base = load_backbone(self.name, input_shape=self.input_shape,
                             weights=self.weights if trained else "none")[0]
        return with_precision(base, self.precision)

    def features(self, seed: int, *xs) -> list:
        """The frozen backbone's features as the head sees them (inference mode, no
        augmentation, GAP when spatial): the linear probe's input, one array per images array."""
        import keras
        keras.utils.set_random_seed(run_seed(seed, 0))
        base = self.load_base()
        model = build_model(base, self.n_classes, 0)
        set_depth(base, self.spec, 0)
        fm = feature_model(model)
        # float32 for the probe whatever the backbone computes in (a no-op in float32)
        return [fm.predict(self.pipeline(x, np.zeros(len(x), np.int64), train=False),
                           verbose=0).astype(np.float32, copy=False) for x in xs]

    def train(self, depth, fit, val, seed: int, probe=None, min_steps=0, declared_lr=None,
              batch_size=None):
        """One baseline at `depth` trained on fit = (images, labels), selecting on val (None
        with `declared_lr`). Returns (model, info) as `finetune.train_at_depth`."""
        def make_ds(split, ds_seed=None):
            if split == "train":
                return self.pipeline(*fit, train=True, seed=ds_seed, min_steps=min_steps,
                                     batch_size=batch_size)
            return self.pipeline(*{"train_plain": fit, "val": val}[split], train=False)

        # A fresh backbone per build: earlier runs must not leak trained weights into this one.
        return train_at_depth(lambda: self.load_base(trained=depth != "scratch"), self.spec,
                              depth, self.n_classes, make_ds, self.fcfg, seed, probe=probe,
                              declared_lr=declared_lr, precision=self.precision)

    def score(self, model, seed: int):
        """Test-split probabilities (rows renormalised in float64), predictions, metrics and
        predict seconds: the test split is read here only, once per run."""
        x, y = self.split("test")
        proba, pred_s = timed_predict(model, self.pipeline(x, y, train=False))
        proba = proba.astype(np.float64)
        proba /= proba.sum(axis=1, keepdims=True)  # float32 softmax rows drift from 1 by ~1e-7
        y_pred = proba.argmax(1)
        m = classification_metrics(y, y_pred, proba=proba, labels=np.arange(self.n_classes),
                                   class_names=list(self.target.class_names),
                                   n_boot=self.cfg["classical"]["bootstrap"], seed=seed)
        return proba, y_pred, m, pred_s

    def ident(self, depth, seed: int, **extra) -> dict:
        """What defines a run's numbers (its run id is a hash of this)."""
        ident = run_identity(self.cfg, depth, self.bprov, self.input_shape,
                             self.prepared["split_def"])
        return {**ident, "seed": seed, **extra}


def _run_finetune(cfg: dict, run_dir, prepared=None, depths=None) -> list[dict]:
    import json

    import joblib

    run_dir = Path(run_dir)
    ctx = Context(cfg, run_dir, prepared)
    fcfg, seed = cfg["finetune"], cfg["experiment"]["seed"]
    blocks, target, y = ctx.blocks, ctx.target, ctx.y
    todo = parse_depths(depths if depths is not None else fcfg["depths"], len(blocks))
    tr, va, test_idx = ctx.rows["train"], ctx.rows["val"], ctx.rows["test"]
    n_classes = ctx.n_classes
    probe_cache: dict = {}

    def get_probe():
        """The k = 0 linear probe, fitted once per call on the frozen features of train + val."""
        if "probe" not in probe_cache:
            t0 = time.perf_counter()
            f_tr, f_va = ctx.features(seed, ctx.x["train"], ctx.x["val"])
            probe = fit_probe(f_tr, y[tr], f_va, y[va], n_classes, seed=seed)
            probe.seconds = time.perf_counter() - t0    # embedding + C search + refit
            log.info("probe: C %g, val accuracy %.4f, %.0f s (%d features).", probe.C,
                     probe.val_accuracy, probe.seconds, f_tr.shape[1])
            probe_cache["probe"] = probe
        return probe_cache["probe"]

    table = rf.results_csv(run_dir)
    new_rows = []
    for depth in todo:
        stage = "scratch" if depth == "scratch" else "finetune"
        ident = ctx.ident(depth, seed)
        run_id = f"ft-{hash_obj(ident, 12)}"
        if results.has_run(table, run_id):
            log.info("%s depth %s: already in %s, skipped.", stage, depth, table)
            continue
        log.info("%s depth %s: training …", stage, depth)
        probe = None if depth == "scratch" else get_probe()
        probe_s = 0.0 if probe is None else probe.seconds
        t1 = time.perf_counter()
        model, info = ctx.train(depth, ctx.split("train"), ctx.split("val"), seed, probe=probe)
        fit_s = probe_s + (time.perf_counter() - t1)
        proba, y_pred, m, pred_s = ctx.score(model, seed)
        params, n_train, notes = run_params(depth, info, probe, len(tr))
        out = run_dir / rf.FINETUNE / run_id
        meta = {"run_id": run_id, "ident": ident, "backbone_provenance": ctx.bprov, "metrics": m,
                "precision": ctx.precision,
                "trainable_params": info["trainable_params"], "epochs": info["epochs"],
                "fit_seconds": fit_s, "best_params": params, "val_accuracy": info["val_accuracy"]}
        history = info["history"]
        if probe is not None:
            history = {"probe": {"C": probe.C, "val_scores": probe.val_scores}, **history}
        save_run(out, model, history, meta)
        (out / rf.RUN_CONFIG).write_text(cconfig.to_toml(cfg))
        if probe is not None:
            np.savez(out / "probe.npz", kernel=probe.kernel, bias=probe.bias, C=probe.C,
                     val_accuracy=probe.val_accuracy)
            if depth == 0:
                joblib.dump(probe.model, out / "probe.joblib")
        np.savez_compressed(out / rf.PREDICTIONS, ids=np.asarray(target.ids)[test_idx],
                            y_true=y[test_idx], y_pred=y_pred, proba=proba.astype(np.float32),
                            classes=np.asarray(target.class_names))
        row = results.new_row(
            cfg, run_id=run_id, stage=stage, **depth_columns(ctx, depth),
            split_def=hash_obj(ctx.prepared["split_def"], 12),
            n_train=n_train, n_val=len(va), n_test=len(test_idx), n_classes=n_classes,
            selection=_selection(depth, fcfg), val_accuracy=info["val_accuracy"],
            accuracy=m["accuracy"], acc_ci_low=m["acc_ci_low"], acc_ci_high=m["acc_ci_high"],
            macro_f1=m["macro_f1"], log_loss=m.get("log_loss"), fit_seconds=round(fit_s, 3),
            predict_seconds=round(pred_s, 3), epochs=info["epochs"],
            trainable_params=info["trainable_params"],
            best_params=json.dumps(params, sort_keys=True), notes=notes,
            predictions=str((out / rf.PREDICTIONS).relative_to(run_dir)),
            model=str((out / rf.MODEL_KERAS).relative_to(run_dir)))
        results.append(table, row)
        new_rows.append(row)
        log.info("%s depth %s: val accuracy %.4f, test accuracy %.4f in %.0f s (%d epochs, %d "
                 "trainable params).", stage, depth, info["val_accuracy"], m["accuracy"], fit_s,
                 info["epochs"], info["trainable_params"])
    return new_rows


def depth_columns(ctx: Context, depth) -> dict:
    """The results columns that say which baseline a row is."""
    scratch = depth == "scratch"
    return dict(method="scratch" if scratch else f"finetune k={depth}", backbone=ctx.name,
                weights="random" if scratch else ctx.bprov.get("weights", ctx.weights),
                depth="scratch" if scratch else str(depth),
                frozen_blocks=ctx.spec.frozen_blocks(depth=depth),
                dataset=ctx.cfg["dataset"]["name"])


def run_params(depth, info: dict, probe, n_fit: int) -> tuple[dict, int, str]:
    """(best_params, n_train, notes) of one run: the probe's C at k = 0, the learning rate and
    epochs otherwise."""
    probe_s = 0.0 if probe is None else probe.seconds
    if depth == 0:
        return ({**probe.params(), "epochs": 0}, probe.n_train,
                f"Linear probe: {probe.seconds:.1f} s to embed train + val and fit. "
                f"{probe.notes}".strip())
    params = {"learning_rate": info["learning_rate"], "lr_val_accuracy": info["lr_val_accuracy"],
              "epochs": info["epochs"], "restored_epoch": info["restored_epoch"],
              "epochs_all_candidates": info["epochs_total"]}
    if probe is not None:
        params["probe_C"] = probe.C
    notes = (f"{info['epochs_total']} epochs trained over all learning-rate candidates."
             + (f" fit_seconds includes the k = 0 probe it starts from ({probe_s:.1f} s)."
                if probe is not None else ""))
    return params, n_fit, notes
