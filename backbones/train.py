"""Self-training an own CNN (the default experiment's backbone, trained on half A), and the
training pieces fine-tuning shares with it: augmentation, op determinism, the batched pipeline.

`train_backbone` writes one folder that `load_backbone(name, weights=<folder>)` reads back:
  model.keras   the whole classifier (trunk + head); the backbone is the model up to "fc"
  history.json  per-epoch loss/accuracy/val_loss/val_accuracy/learning_rate
  config.json   backbone, train settings, seed, classes, data hash, val accuracy, code version,
                and `key`: the hash of everything that decides the weights.
A second call with the same key returns the folder untouched ("reusing …"); a different key
retrains into a temporary sibling folder that replaces the old one only once complete, so a crash
never leaves a half-written backbone behind.

Augmentation runs in the tf.data map (training only), NOT as layers of the saved model: the saved
backbone must be deterministic at extraction time. Pixels reach the model through
`backbones.inputs.prepare_inputs` like at extraction; an own CNN's first layer rescales them.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from backbones import own
from backbones.inputs import prepare_inputs
from backbones.registry import available, get
from cutpoint.config import DEFAULTS
from cutpoint.provenance import code_version, hash_arrays, hash_obj, package_versions
from cutpoint import runfolder as rf

log = logging.getLogger("cutpoint.train")

AUGMENTATIONS = ("shift", "flip", "zoom")
SHIFT, ZOOM = 0.1, 0.1  # fractions of the image size


def _check_cfg(cfg_train: dict) -> dict:
    cfg = dict(DEFAULTS["train"])
    unknown = set(cfg_train) - set(cfg)
    if unknown:
        raise ValueError(f"Unknown train setting(s) {sorted(unknown)}. Valid: {', '.join(cfg)}.")
    cfg.update(cfg_train)
    augment = [cfg["augment"]] if isinstance(cfg["augment"], str) else list(cfg["augment"])
    bad = [a for a in augment if a not in AUGMENTATIONS]
    if bad:
        raise ValueError(f"train.augment must be a subset of {list(AUGMENTATIONS)}. "
                         f"Got {augment!r}.")
    cfg["augment"] = augment
    for key in ("epochs", "batch_size"):
        if int(cfg[key]) < 1:
            raise ValueError(f"train.{key} must be at least 1. Got {cfg[key]!r}.")
    if not float(cfg["learning_rate"]) > 0:
        raise ValueError(f"train.learning_rate must be positive. Got {cfg['learning_rate']!r}.")
    return cfg


def _check_data(x, y, num_classes: int, what: str):
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"{what} images must be a non-empty (n, height, width[, channels]) array. "
                         f"Got shape {x.shape}.")
    if y.shape != (len(x),):
        raise ValueError(f"{what} labels must be one integer per image: got shape {y.shape} for "
                         f"{len(x)} images.")
    if x.dtype != np.uint8:
        if x.min() < 0 or x.max() > 255:
            raise ValueError(f"{what} images must be pixels in [0, 255] (uint8); got values in "
                             f"[{x.min()}, {x.max()}]. Do not rescale them: the model does.")
        x = x.astype(np.uint8)
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"{what} labels must be integers in 0..{num_classes - 1} (num_classes="
                         f"{num_classes}); got {y.dtype} in [{y.min()}, {y.max()}]. Encode them "
                         "to contiguous 0..K-1 first.")
    return x, y.astype(np.int64)


def augmentation(augment, seed: int) -> list:
    """Keras augmentation layers for `augment` ⊂ {shift, flip, zoom}, applied in tf.data (never
    saved into the model). Shared by self-training and fine-tuning."""
    import keras

    steps = []
    if "shift" in augment:
        steps.append(keras.layers.RandomTranslation(SHIFT, SHIFT, fill_mode="constant", seed=seed))
    if "flip" in augment:
        steps.append(keras.layers.RandomFlip("horizontal", seed=seed + 1))
    if "zoom" in augment:
        steps.append(keras.layers.RandomZoom(ZOOM, fill_mode="constant", seed=seed + 2))
    return steps


def batches(x, y, spec, input_shape, batch_size: int, *, augment=(), seed: int = 0,
            shuffle: bool = False, min_steps: int = 0, max_shuffle_buffer: int | None = None,
            resize_method: str = "bilinear"):
    """Batched tf.data of (model input, label) for training and scoring a backbone.

    Rows shuffled (seeded, reshuffled every epoch) when `shuffle`, batched, then each batch
    prepared by `prepare_inputs` with the `augment` layers (empty: plain), prefetched.
    min_steps: an epoch is at least this many batches (the rows repeated, each copy augmented
    anew), so a few-label subset still gets real training per epoch; 0: one pass.
    max_shuffle_buffer: cap on the shuffle buffer (None: every row).
    """
    import tensorflow as tf

    steps = augmentation(augment, seed)

    def prep(xb, yb):
        return prepare_inputs(xb, spec, input_shape, resize_method, steps), yb

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    repeat = -(-min_steps * batch_size // len(x)) if min_steps else 1
    if repeat > 1:
        ds = ds.repeat(repeat)
    if shuffle:
        buffer = len(x) * repeat
        ds = ds.shuffle(buffer if max_shuffle_buffer is None else min(buffer, max_shuffle_buffer),
                        seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(prep, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def training_key(name, cfg_train, seed, data_hash, num_classes, class_names) -> str:
    return hash_obj({"backbone": name, "train": cfg_train, "seed": int(seed), "data": data_hash,
                     "num_classes": int(num_classes), "class_names": list(class_names)})


def _reusable(out_dir: Path, key: str) -> bool:
    try:
        cfg = json.loads((out_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return cfg.get("key") == key and (out_dir / "model.keras").is_file()


def _replace_dir(tmp: Path, out_dir: Path):
    """Swap the finished temp folder in; the old folder is removed only after the rename."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def train_backbone(name, train, val, cfg_train: dict, out_dir, seed: int, num_classes: int,
                   class_names=None, *, verbose: int = 0) -> Path:
    """Train `build_classifier(name, …)` on `train`, early-stopped on `val`; returns out_dir.

    train, val: (x uint8 (n, H, W[, C]), y int 0..num_classes-1). Reuses out_dir when its
    config.json carries the same key (same name, settings, seed and data content).
    """
    spec = get(name)
    if not spec.own:
        raise ValueError(f"Only cutpoint's own CNNs can be self-trained "
                         f"({', '.join(available(lambda s: s.own))}); {name!r} is not one of them:"
                         " use weights = 'imagenet', 'none' or a weights file.")
    num_classes = int(num_classes)
    class_names = [str(c) for c in (class_names if class_names is not None else range(num_classes))]
    if len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names for num_classes={num_classes}.")
    cfg = _check_cfg(dict(cfg_train or {}))
    x_tr, y_tr = _check_data(*train, num_classes, "Training")
    x_va, y_va = _check_data(*val, num_classes, "Validation")
    if x_tr.shape[1:] != x_va.shape[1:]:
        raise ValueError(f"Training and validation images differ in shape: {x_tr.shape[1:]} vs "
                         f"{x_va.shape[1:]}.")
    data_hash = hash_arrays(x_tr, y_tr, x_va, y_va)
    key = training_key(name, cfg, seed, data_hash, num_classes, class_names)
    out_dir = Path(out_dir)
    if _reusable(out_dir, key):
        log.info("reusing the trained %s in %s (key %s)", name, out_dir, key)
        return out_dir

    _check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _fit(spec, cfg, x_tr, y_tr, x_va, y_va, int(seed), num_classes, tmp, verbose, extra={
            "backbone": name, "train": cfg, "seed": int(seed), "num_classes": num_classes,
            "class_names": class_names, "data_hash": data_hash, "key": key})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # never leave a half-trained folder behind
        raise
    _replace_dir(tmp, out_dir)
    log.info("trained %s → %s", name, out_dir)
    return out_dir


def _check_replaceable(out_dir: Path):
    """Only an empty folder or one written by train_backbone may be replaced (never a run dir)."""
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return
    try:
        ours = "key" in json.loads((out_dir / "config.json").read_text())
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise ValueError(f"{str(out_dir)!r} exists and is not a cutpoint-trained backbone folder "
                         "(no config.json with a key); refusing to replace it. Pass a new or "
                         "empty out_dir, e.g. runs/<experiment>/backbone.")


@contextlib.contextmanager
def deterministic_ops():
    """TensorFlow op determinism for the duration (restored after): the same seed then gives
    bit-identical training on CPU, whatever the thread scheduling."""
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    was = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was:
            tf_config.disable_op_determinism()


@deterministic_ops()
def _fit(spec, cfg, x_tr, y_tr, x_va, y_va, seed, num_classes, tmp: Path, verbose, extra):
    """Train into `tmp`: model.keras (best val_loss), history.json, config.json."""
    import keras

    name = spec.name
    log.info("training %s on %d images (%d validation), key %s", name, len(x_tr), len(x_va),
             extra["key"])
    keras.utils.set_random_seed(seed)
    model = own.build_classifier(name, x_tr.shape[1:], num_classes, seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(float(cfg["learning_rate"])),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    bs, patience = int(cfg["batch_size"]), int(cfg["patience"])
    shape = x_tr.shape[1:]
    train_ds = batches(x_tr, y_tr, spec, shape, bs, augment=cfg["augment"], seed=seed,
                       shuffle=True)
    val_ds = batches(x_va, y_va, spec, shape, bs, seed=seed)
    callbacks = [
        keras.callbacks.EarlyStopping("val_loss", patience=patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=max(1, patience // 2),
                                          min_lr=1e-6),
        keras.callbacks.ModelCheckpoint(str(tmp / "model.keras"), monitor="val_loss",
                                        save_best_only=True),
        keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: log.info(
            "%s epoch %d: %s", name, epoch + 1,
            ", ".join(f"{k} {float(v):.4g}" for k, v in (logs or {}).items()))),
    ]
    t0 = time.perf_counter()
    history = model.fit(train_ds, validation_data=val_ds, epochs=int(cfg["epochs"]),
                        callbacks=callbacks, verbose=verbose, shuffle=False)  # ds shuffles
    seconds = time.perf_counter() - t0
    val_loss, val_acc = model.evaluate(val_ds, verbose=0)  # the restored best weights
    model.save(tmp / "model.keras")
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    (tmp / "history.json").write_text(json.dumps(hist, indent=2))
    config = {
        **extra, "input_shape": list(x_tr.shape[1:]), "n_train": len(x_tr), "n_val": len(x_va),
        "val_accuracy": float(val_acc), "val_loss": float(val_loss),
        "epochs_run": len(hist.get("loss", [])), "train_seconds": round(seconds, 2),
        "params": int(model.count_params()), "code_version": code_version(),
        "packages": package_versions(),
    }
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    log.info("trained %s: val accuracy %.4f after %d epochs (%.1f s)", name, val_acc,
             config["epochs_run"], seconds)


def ensure_self_trained(cfg, run_dir, prepared) -> Path:
    """Train the configured own CNN on the source half (A), or reuse it while its inputs match.
    Returns the trained folder, `<run_dir>/backbone`."""
    source = prepared["source"]
    if source is None:
        raise ValueError("backbone.weights = 'self' trains the backbone on dataset.source_classes, "
                         "but source_classes is empty. Give the classes of half A (e.g. [0, 1, 2, "
                         "3, 4]) or use weights = 'imagenet' / a weights file.")
    seed = cfg["experiment"]["seed"]
    tr, va = (np.flatnonzero(np.asarray(source.split) == s) for s in ("train", "val"))
    size, method = None, cfg["backbone"]["resize_method"]
    if source.image_shape is None:  # an image folder of mixed sizes: train at the input size
        size = (cfg["backbone"]["input_size"],) * 2
        if not size[0]:
            raise ValueError("The source images differ in size: set backbone.input_size (e.g. 64) "
                             "so they can be resized for training the backbone.")
    return train_backbone(
        cfg["backbone"]["name"], train=(source.images(tr, size=size, method=method),
                                        source.labels[tr]),
        val=(source.images(va, size=size, method=method), source.labels[va]),
        cfg_train=cfg["train"],
        out_dir=Path(run_dir) / rf.BACKBONE, seed=seed, num_classes=len(source.class_names),
        class_names=list(source.class_names))
