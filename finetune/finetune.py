"""Fine-tuned baselines: the same backbone trained end to end at depth k, and from scratch (BRIEF §7).

Depth k = the number of top blocks unfrozen, by whole blocks (the registry's block ends), never
cutting through one. k = 0 is a linear probe: the head is the logistic regression of
`cutpoint.probe` (C chosen on val, standardisation folded into the weights) on the frozen backbone,
with no gradient training; every k >= 1 starts from that same head and fine-tunes the top k blocks
+ head (linear probe then fine-tune, Kumar et al. 2022), so depth is the only thing that changes
along the curve. Its learning rate is chosen on validation among a few candidates
(`train_at_depth`). k = n_blocks unfreezes everything; `BackboneSpec.frozen_blocks` turns k into
the results' frozen_blocks. The backbone runs in inference mode (BatchNorm keeps its moving
statistics, dropout is off) while its unfrozen weights train, as in the Keras transfer-learning
guide. The guide's `base(x, training=False)` is NOT enough in Keras 3.15: a functional model
replays its graph with the outer `fit`'s training=True over the node's explicit False
(keras/src/models/functional.py, `operation_fn`), so frozen BN statistics drift and frozen dropout
stays on. `InferenceMode` wraps the backbone and calls it with training=False itself, which Keras
honours. Every change of `trainable` is followed by a compile. Scratch = same architecture, random
init (seeded), every layer trainable and in training mode (BatchNorm must learn its statistics).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import keras
import numpy as np

from backbones.cut import block_layers

log = logging.getLogger("cutpoint.finetune")


class DepthError(ValueError):
    pass


def parse_depths(requested, n_blocks: int) -> list:
    """Config depths → ordered list of ints and/or "scratch". [] = 0 … n_blocks, then scratch."""
    if not requested:
        return list(range(n_blocks + 1)) + ["scratch"]
    out = []
    for d in requested:
        d = str(d).strip().lower()
        if d == "scratch":
            out.append("scratch")
        elif d == "all":
            out.append(n_blocks)
        elif d.isdigit() and int(d) <= n_blocks:
            out.append(int(d))
        else:
            raise DepthError(
                f"Unknown fine-tuning depth {d!r}. Expected an integer from 0 to {n_blocks} (the "
                f"backbone has {n_blocks} blocks), 'all' or 'scratch', e.g. DEPTHS=0,2,all,scratch.")
    return list(dict.fromkeys(out))


def set_depth(base, spec, k: int) -> None:
    """Unfreeze exactly the top k blocks of `base` (and freeze the rest)."""
    groups = block_layers(base, spec)
    if not 0 <= k <= len(groups):
        raise DepthError(f"Depth {k} is out of range: the backbone has {len(groups)} blocks.")
    base.trainable = True
    for i, group in enumerate(groups):
        for name in group:
            base.get_layer(name).trainable = i >= len(groups) - k


def trainable_count(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@keras.saving.register_keras_serializable(package="cutpoint")
class InferenceMode(keras.layers.Layer):
    """Call the wrapped backbone with training=False, whatever the caller's mode."""

    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, x, training=None):
        return self.inner(x, training=False)

    def compute_output_shape(self, input_shape):
        return self.inner.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "inner": keras.saving.serialize_keras_object(self.inner)}

    @classmethod
    def from_config(cls, config):
        config["inner"] = keras.saving.deserialize_keras_object(config["inner"])
        return cls(**config)


def build_model(base, num_classes: int, seed: int, bn_inference: bool = True,
                dropout: float = 0.0):
    """A new head on `base`: pool if the output is spatial, [dropout,] softmax. The head's input
    (the pooled backbone output) is what `feature_model` returns and what the linear probe is
    fitted on. Heads that start from the probe get no dropout: its weights act on raw features
    with the standardisation folded in (b' = b - (mu / sigma) @ W), so dropping features would
    also drop their share of the mean that b' cancels and wreck the logits (measured on the
    default experiment: training loss 3.7 in the first epoch from a 0.94 probe). Scratch's new
    head keeps the usual dropout 0.2."""

    inputs = keras.Input(shape=base.input.shape[1:], name="image")
    x = InferenceMode(base, name="backbone")(inputs) if bn_inference else base(inputs)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, seed=seed, name="head_dropout")(x)
    # float32 whatever the backbone's precision: a bfloat16/float16 softmax loses the small
    # probabilities (log-loss, calibration) and can overflow (the Keras mixed-precision guide).
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                                 name="head")(x)
    return keras.Model(inputs, outputs, name=f"{base.name}_finetune")


def feature_model(model):
    """The features the head sees (backbone output, GAP-pooled when spatial): the probe's input."""
    return keras.Model(model.input, model.get_layer("head").input)


def set_head(model, kernel, bias) -> None:
    """Load (folded) linear-probe weights into the softmax head."""
    model.get_layer("head").set_weights([np.asarray(kernel, np.float32),
                                         np.asarray(bias, np.float32)])


def run_seed(seed: int, depth, lr=None) -> int:
    """A seed for one build or training run, from (experiment seed, depth[, learning rate]): the
    same run gets the same numbers whichever depths ran before it."""
    d = 10_000 if depth == "scratch" else int(depth)
    key = [int(seed), d] + ([] if lr is None else [int(round(float(lr) * 1e12))])
    return int(np.random.SeedSequence(key).generate_state(1)[0] % (2 ** 31 - 1))


def _compile(model, lr, precision="float32"):
    opt = keras.optimizers.Adam(lr)
    if precision == "mixed_float16":   # float16 gradients underflow without loss scaling
        opt = keras.optimizers.LossScaleOptimizer(opt)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def _epoch(model, train_ds, val_ds) -> dict:
    """One training epoch, then the validation scores: {loss, accuracy, val_loss, val_accuracy}
    (val_ds None: no validation scores)."""
    hist = model.fit(train_ds, validation_data=val_ds, epochs=1, verbose=0,
                     shuffle=False)  # the tf.data pipeline shuffles
    return {k: float(v[-1]) for k, v in hist.history.items()}


class _Run:
    """One training run at one learning rate, stepped an epoch at a time; remembers the weights of
    the epoch with the lowest validation loss (what early stopping restores)."""

    def __init__(self, model, train_ds, val_ds, lr, what):
        self.model, self.train_ds, self.val_ds, self.lr, self.what = (
            model, train_ds, val_ds, lr, what)
        self.history: dict = {}
        self.best_loss, self.best_epoch, self.best_weights, self.wait = np.inf, 0, None, 0
        self.validated = val_ds is not None     # False: declared epochs, the last one is kept

    @property
    def epochs(self) -> int:
        return len(self.history.get("loss", []))

    def step(self) -> None:
        logs = _epoch(self.model, self.train_ds, self.val_ds)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)
        log.info("%s lr %g epoch %d: %s", self.what, self.lr, self.epochs,
                 ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))
        if not self.validated:
            self.best_epoch = self.epochs
        elif logs["val_loss"] < self.best_loss:
            self.best_loss, self.best_epoch, self.wait = logs["val_loss"], self.epochs, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1

    @property
    def val_accuracy(self) -> float | None:
        """Validation accuracy of the epoch early stopping restores (lowest val loss so far)."""
        if not self.validated:
            return None
        return float(self.history["val_accuracy"][self.best_epoch - 1])

    def finish(self, epochs: int, patience: int) -> None:
        while self.epochs < epochs and self.wait < patience:
            self.step()
        if self.validated:
            self.model.set_weights(self.best_weights)


def train_at_depth(load_base, spec, depth, num_classes, make_ds, fcfg, seed, probe=None,
                   declared_lr=None, precision="float32"):
    """Build and train one baseline. Returns (model, info).

    load_base() -> a fresh backbone (for scratch: random init; it is called right after the
    seed is set, so the init is the seed's). make_ds(split, seed) -> a FRESH tf.data pipeline
    ('train': shuffled + augmented with that seed; 'val': plain). probe: the fitted
    `cutpoint.probe.Probe` (head weights) for depth >= 0; None for scratch.

    k = 0: the probe's head on the frozen backbone, no gradient step. k >= 1 and scratch: every
    learning rate of fcfg["learning_rates"] (scratch: "scratch_learning_rates") trains
    lr_search_epochs epochs from the same start (same seed, same probe head); the best validation
    accuracy (ties: the lower validation loss) continues up to fcfg["epochs"] epochs in all, with
    early stopping on val loss (patience), and the epoch of the lowest val loss is restored.
    declared_lr: too few labels to validate on (the label-efficiency curve's smallest budgets):
    no search and no early stopping — this one learning rate, exactly fcfg["epochs"] epochs,
    make_ds("val") is never called and val_accuracy is None.
    info: history (per learning rate), epochs (of the chosen run), epochs_total (all candidates),
    learning_rate, lr_val_accuracy, restored_epoch, val_accuracy, trainable_params.
    precision: the backbone's compute (extract.precision; load_base applies it); mixed_float16
    adds loss scaling to the optimizer.
    """
    scratch = depth == "scratch"
    build_seed = run_seed(seed, depth)

    def build():
        keras.utils.set_random_seed(build_seed)   # before EVERY build (the scratch init too)
        base = load_base()
        model = build_model(base, num_classes, build_seed, bn_inference=not scratch,
                            dropout=0.2 if scratch else 0.0)
        if scratch:
            base.trainable = True
        else:
            set_head(model, probe.kernel, probe.bias)
            set_depth(base, spec, depth)
        return model

    if depth == 0:
        model = build()
        return model, {"history": {}, "epochs": 0, "epochs_total": 0, "learning_rate": None,
                       "val_accuracy": None if probe.val_accuracy is None
                       else round(float(probe.val_accuracy), 6),
                       "trainable_params": trainable_count(model)}

    lrs = [float(v) for v in ([declared_lr] if declared_lr else
                              fcfg["scratch_learning_rates" if scratch else "learning_rates"])]
    if not lrs or any(not v > 0 for v in lrs):
        raise ValueError(f"finetune.{'scratch_' if scratch else ''}learning_rates must list "
                         f"positive learning rates, e.g. [0.0001]. Got {lrs!r}.")
    search = max(1, int(fcfg["lr_search_epochs"])) if len(lrs) > 1 else 0
    what = "scratch" if scratch else f"k={depth}"
    best, history, scores, total = None, {}, {}, 0
    for lr in lrs:
        model = build()
        _compile(model, lr, precision)   # recompile after every change of `trainable`
        run = _Run(model, make_ds("train", run_seed(seed, depth, lr)),
                   None if declared_lr else make_ds("val", None), lr, what)
        for _ in range(search):
            run.step()
        if search:
            scores[f"{lr:g}"] = round(run.val_accuracy, 6)
            history[f"{lr:g}"] = run.history
            total += run.epochs
        if best is None or (search and (run.val_accuracy, -run.best_loss)
                            > (best.val_accuracy, -best.best_loss)):
            best = run
        else:
            del model, run
    total -= best.epochs
    best.finish(max(int(fcfg["epochs"]), 1), int(fcfg["patience"]))
    total += best.epochs
    history[f"{best.lr:g}"] = best.history
    return best.model, {
        "history": history, "epochs": best.epochs, "epochs_total": total,
        "learning_rate": best.lr, "lr_val_accuracy": scores, "restored_epoch": best.best_epoch,
        "val_accuracy": None if best.val_accuracy is None else round(best.val_accuracy, 6),
        "trainable_params": trainable_count(best.model)}


def save_run(out_dir: Path, model, history, meta) -> None:
    """Model, history and metadata of one run, written to a temp folder then renamed."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save(tmp / "model.keras")
    (tmp / "history.json").write_text(json.dumps(history, indent=1))
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    if out_dir.exists():
        import shutil
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def timed_predict(model, ds):
    t0 = time.perf_counter()
    proba = model.predict(ds, verbose=0)
    return proba, time.perf_counter() - t0
