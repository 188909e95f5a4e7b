"""The finetune stage: a depth sweep plus the scratch baseline, one results row per run."""
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
from finetune.finetune import parse_depths, save_run, timed_predict, train_at_depth

log = logging.getLogger("cutpoint.finetune")
# Part of every run id: bump it when a change to the training code changes the numbers, so
# finished runs are redone rather than skipped.
FINETUNE_VERSION = 2


def _pipeline(x, y, spec, input_shape, batch_size, augment, seed, shuffle):
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
            xb = tf.clip_by_value(tf.image.resize(xb, (h, w)), 0.0, 255.0)
        for layer in steps:
            xb = layer(xb, training=True)
        return pre(xb), yb

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(min(len(x), 20000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(prep, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _val_accuracy(history: dict):
    """Validation accuracy of the epoch early stopping restored (lowest val_loss) in the last
    phase that ran."""
    for phase in reversed(list(history.values())):
        if phase.get("val_loss"):
            best = int(np.argmin(phase["val_loss"]))
            return round(float(phase["val_accuracy"][best]), 6)
    return None


def run_finetune(cfg: dict, run_dir, prepared=None, depths=None) -> list[dict]:
    """Run every requested depth not already in the results table. Returns the new rows."""
    from extract import backbones
    from extract.extractor import ensure_self_trained

    run_dir = Path(run_dir)
    fcfg, bcfg, seed = cfg["finetune"], cfg["backbone"], cfg["experiment"]["seed"]
    prepared = prepared or cds.prepare(cfg, run_dir=run_dir)
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
    x_tr, x_va, x_te = (target.images(i, size=size) for i in (tr, va, test_idx))
    n_classes = len(target.class_names)
    mk = dict(spec=spec, input_shape=input_shape, batch_size=fcfg["batch_size"], seed=seed)
    train_ds = _pipeline(x_tr, y[tr], augment=fcfg["augment"], shuffle=True, **mk)
    val_ds = _pipeline(x_va, y[va], augment=[], shuffle=False, **mk)
    test_ds = _pipeline(x_te, y[test_idx], augment=[], shuffle=False, **mk)

    table = run_dir / "results.csv"
    new_rows = []
    for depth in todo:
        stage = "scratch" if depth == "scratch" else "finetune"
        ident = {"version": FINETUNE_VERSION, "stage": stage, "depth": depth,
                 "backbone": bcfg["name"],
                 "weights": bprov.get("weights_sha256", bprov.get("weights")),
                 "input_shape": list(input_shape), "split_def": prepared["split_def"],
                 "finetune": fcfg, "seed": seed}
        run_id = f"ft-{hash_obj(ident, 12)}"
        if results.has_run(table, run_id):
            log.info("%s depth %s: already in %s, skipped.", stage, depth, table)
            continue
        log.info("%s depth %s: training …", stage, depth)
        # A fresh backbone per run: earlier runs must not leak trained weights into this one.
        base, _, _ = backbones.load_backbone(bcfg["name"], input_shape=input_shape,
                                             weights="none" if depth == "scratch" else weights)
        t0 = time.perf_counter()
        model, history, epochs, n_trainable = train_at_depth(base, spec, depth, n_classes,
                                                             train_ds, val_ds, fcfg, seed)
        fit_s = time.perf_counter() - t0
        proba, pred_s = timed_predict(model, test_ds)
        proba = proba.astype(np.float64)
        proba /= proba.sum(axis=1, keepdims=True)  # float32 softmax rows drift from 1 by ~1e-7
        y_pred = proba.argmax(1)
        m = classification_metrics(y[test_idx], y_pred, proba=proba, labels=np.arange(n_classes),
                                   class_names=list(target.class_names),
                                   n_boot=cfg["classical"]["bootstrap"], seed=seed)
        out = run_dir / "finetune" / run_id
        meta = {"run_id": run_id, "ident": ident, "backbone_provenance": bprov, "metrics": m,
                "trainable_params": n_trainable, "epochs": epochs, "fit_seconds": fit_s}
        save_run(out, model, history, meta)
        (out / "config.toml").write_text(cconfig.to_toml(cfg))
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
            n_train=len(tr), n_val=len(va), n_test=len(test_idx), n_classes=n_classes,
            selection="epoch restored by validation loss (early stopping); final model trained "
                      "on train only",
            val_accuracy=_val_accuracy(history),
            accuracy=m["accuracy"], acc_ci_low=m["acc_ci_low"], acc_ci_high=m["acc_ci_high"],
            macro_f1=m["macro_f1"], log_loss=m.get("log_loss"), fit_seconds=round(fit_s, 3),
            predict_seconds=round(pred_s, 3), epochs=epochs, trainable_params=n_trainable,
            predictions=str((out / "predictions.npz").relative_to(run_dir)),
            model=str((out / "model.keras").relative_to(run_dir)))
        results.append(table, row)
        new_rows.append(row)
        log.info("%s depth %s: accuracy %.4f in %.0f s (%d epochs, %d trainable params).",
                 stage, depth, m["accuracy"], fit_s, epochs, n_trainable)
    return new_rows
