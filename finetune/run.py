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

from cutpoint import config as cconfig
from cutpoint import datasets as cds
from cutpoint import results
from cutpoint.metrics import classification_metrics
from cutpoint.provenance import hash_obj
from cutpoint.probe import PROBE_RULE, fit_probe
from finetune.finetune import (build_model, feature_model, parse_depths, run_seed, save_run,
                               set_depth, timed_predict, train_at_depth)

log = logging.getLogger("cutpoint.finetune")
# Part of every run id: bump it when a change to the training code changes the numbers, so
# finished runs are redone rather than skipped.
FINETUNE_VERSION = 3


def _pipeline(x, y, spec, input_shape, batch_size, augment, seed, shuffle,
              resize_method="bilinear"):
    """uint8 images → float [0, 255] at the backbone's size and channels → augment → preprocess."""
    import tensorflow as tf
    from extract.backbones import preprocess_fn
    from extract.train import augmentation

    h, w, c = input_shape
    steps = augmentation(augment, seed)
    pre = preprocess_fn(spec)

    def prep(xb, yb):
        xb = tf.cast(xb, tf.float32)
        if c == 3 and xb.shape[-1] == 1:
            xb = tf.repeat(xb, 3, axis=-1)
        if tuple(xb.shape[1:3]) != (h, w):
            xb = tf.clip_by_value(tf.image.resize(xb, (h, w), method=resize_method), 0.0, 255.0)
        for layer in steps:
            xb = layer(xb, training=True)
        return pre(xb), yb

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(min(len(x), 20000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(prep, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


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
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    was = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        return _run_finetune(cfg, run_dir, prepared, depths)
    finally:
        if not was:
            tf_config.disable_op_determinism()


def _run_finetune(cfg: dict, run_dir, prepared=None, depths=None) -> list[dict]:
    import json

    import joblib
    import keras

    from extract import backbones
    from extract.extractor import apply_channels, ensure_self_trained

    run_dir = Path(run_dir)
    fcfg, bcfg, seed = cfg["finetune"], cfg["backbone"], cfg["experiment"]["seed"]
    prepared = apply_channels(cfg, prepared or cds.prepare(cfg, run_dir=run_dir))
    target = prepared["target"]
    weights = bcfg["weights"]
    if weights == "self":
        weights = str(ensure_self_trained(cfg, run_dir, prepared))
    spec = backbones.get_spec(bcfg["name"])
    input_shape = backbones.input_shape_for(spec, target.image_shape, bcfg.get("input_size", 0))
    _, _, bprov = backbones.load_backbone(bcfg["name"], weights=weights, input_shape=input_shape)
    blocks = list(spec.blocks)
    todo = parse_depths(depths if depths is not None else fcfg["depths"], len(blocks))

    # the experiment's splits, carved once by cutpoint.splits.prepare (never here)
    tr, va, test_idx = (np.flatnonzero(np.asarray(target.split) == s)
                        for s in ("train", "val", "test"))
    y = np.asarray(target.labels)
    size = None if target.image_shape is not None else input_shape[:2]  # mixed-size folders
    x_tr, x_va, x_te = (target.images(i, size=size, method=bcfg["resize_method"])
                        for i in (tr, va, test_idx))
    n_classes = len(target.class_names)
    mk = dict(spec=spec, input_shape=input_shape, batch_size=fcfg["batch_size"],
              resize_method=bcfg["resize_method"])
    precision = cfg["extract"].get("precision", "float32")   # the same compute as extraction

    def make_ds(split, ds_seed=None):
        """A fresh pipeline per call: never one shared (and advanced) across runs."""
        if split == "train":
            return _pipeline(x_tr, y[tr], augment=fcfg["augment"], shuffle=True, seed=ds_seed,
                             **mk)
        x, yy = {"train_plain": (x_tr, y[tr]), "val": (x_va, y[va]),
                 "test": (x_te, y[test_idx])}[split]
        return _pipeline(x, yy, augment=[], shuffle=False, seed=0, **mk)

    def load_base(trained=True):
        base = backbones.load_backbone(bcfg["name"], input_shape=input_shape,
                                       weights=weights if trained else "none")[0]
        return backbones.with_precision(base, precision)

    probe_cache: dict = {}

    def get_probe():
        """The k = 0 linear probe, fitted once per call on the frozen features of train + val."""
        if "probe" not in probe_cache:
            t0 = time.perf_counter()
            keras.utils.set_random_seed(run_seed(seed, 0))
            base = load_base()
            model = build_model(base, n_classes, 0)
            set_depth(base, spec, 0)
            fm = feature_model(model)
            # float32 for the probe whatever the backbone computes in (a no-op in float32)
            f_tr = fm.predict(make_ds("train_plain"), verbose=0).astype(np.float32, copy=False)
            f_va = fm.predict(make_ds("val"), verbose=0).astype(np.float32, copy=False)
            probe = fit_probe(f_tr, y[tr], f_va, y[va], n_classes, seed=seed)
            probe.seconds = time.perf_counter() - t0    # embedding + C search + refit
            log.info("probe: C %g, val accuracy %.4f, %.0f s (%d features).", probe.C,
                     probe.val_accuracy, probe.seconds, f_tr.shape[1])
            probe_cache["probe"] = probe
        return probe_cache["probe"]

    table = run_dir / "results.csv"
    new_rows = []
    for depth in todo:
        stage = "scratch" if depth == "scratch" else "finetune"
        ident = run_identity(cfg, depth, bprov, input_shape, prepared["split_def"])
        run_id = f"ft-{hash_obj(ident, 12)}"
        if results.has_run(table, run_id):
            log.info("%s depth %s: already in %s, skipped.", stage, depth, table)
            continue
        log.info("%s depth %s: training …", stage, depth)
        probe = None if depth == "scratch" else get_probe()
        probe_s = 0.0 if probe is None else probe.seconds
        t1 = time.perf_counter()
        # A fresh backbone per build: earlier runs must not leak trained weights into this one.
        model, info = train_at_depth(lambda: load_base(trained=depth != "scratch"), spec, depth,
                                     n_classes, make_ds, fcfg, seed, probe=probe,
                                     precision=precision)
        fit_s = probe_s + (time.perf_counter() - t1)
        proba, pred_s = timed_predict(model, make_ds("test"))
        proba = proba.astype(np.float64)
        proba /= proba.sum(axis=1, keepdims=True)  # float32 softmax rows drift from 1 by ~1e-7
        y_pred = proba.argmax(1)
        m = classification_metrics(y[test_idx], y_pred, proba=proba, labels=np.arange(n_classes),
                                   class_names=list(target.class_names),
                                   n_boot=cfg["classical"]["bootstrap"], seed=seed)
        if depth == 0:
            params = {**probe.params(), "epochs": 0}
            n_train = probe.n_train
            notes = (f"Linear probe: {probe.seconds:.1f} s to embed train + val and fit. "
                     f"{probe.notes}").strip()
        else:
            params = {"learning_rate": info["learning_rate"],
                      "lr_val_accuracy": info["lr_val_accuracy"],
                      "epochs": info["epochs"], "restored_epoch": info["restored_epoch"],
                      "epochs_all_candidates": info["epochs_total"]}
            if probe is not None:
                params["probe_C"] = probe.C
            n_train = len(tr)
            notes = (f"{info['epochs_total']} epochs trained over all learning-rate candidates."
                     + (f" fit_seconds includes the k = 0 probe it starts from ({probe_s:.1f} s)."
                        if probe is not None else ""))
        out = run_dir / "finetune" / run_id
        meta = {"run_id": run_id, "ident": ident, "backbone_provenance": bprov, "metrics": m,
                "precision": precision,
                "trainable_params": info["trainable_params"], "epochs": info["epochs"],
                "fit_seconds": fit_s, "best_params": params, "val_accuracy": info["val_accuracy"]}
        history = info["history"]
        if probe is not None:
            history = {"probe": {"C": probe.C, "val_scores": probe.val_scores}, **history}
        save_run(out, model, history, meta)
        (out / "config.toml").write_text(cconfig.to_toml(cfg))
        if probe is not None:
            np.savez(out / "probe.npz", kernel=probe.kernel, bias=probe.bias, C=probe.C,
                     val_accuracy=probe.val_accuracy)
            if depth == 0:
                joblib.dump(probe.model, out / "probe.joblib")
        np.savez_compressed(out / "predictions.npz", ids=np.asarray(target.ids)[test_idx],
                            y_true=y[test_idx], y_pred=y_pred, proba=proba.astype(np.float32),
                            classes=np.asarray(target.class_names))
        row = results.new_row(
            cfg, run_id=run_id, stage=stage,
            method="scratch" if stage == "scratch" else f"finetune k={depth}",
            backbone=bcfg["name"],
            weights="random" if stage == "scratch" else bprov.get("weights", weights),
            depth="scratch" if stage == "scratch" else str(depth),
            frozen_blocks=0 if stage == "scratch" else len(blocks) - depth,
            dataset=cfg["dataset"]["name"], split_def=hash_obj(prepared["split_def"], 12),
            n_train=n_train, n_val=len(va), n_test=len(test_idx), n_classes=n_classes,
            selection=_selection(depth, fcfg), val_accuracy=info["val_accuracy"],
            accuracy=m["accuracy"], acc_ci_low=m["acc_ci_low"], acc_ci_high=m["acc_ci_high"],
            macro_f1=m["macro_f1"], log_loss=m.get("log_loss"), fit_seconds=round(fit_s, 3),
            predict_seconds=round(pred_s, 3), epochs=info["epochs"],
            trainable_params=info["trainable_params"],
            best_params=json.dumps(params, sort_keys=True), notes=notes,
            predictions=str((out / "predictions.npz").relative_to(run_dir)),
            model=str((out / "model.keras").relative_to(run_dir)))
        results.append(table, row)
        new_rows.append(row)
        log.info("%s depth %s: val accuracy %.4f, test accuracy %.4f in %.0f s (%d epochs, %d "
                 "trainable params).", stage, depth, info["val_accuracy"], m["accuracy"], fit_s,
                 info["epochs"], info["trainable_params"])
    return new_rows
