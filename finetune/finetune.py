"""Fine-tuned baselines: the same backbone trained end to end at depth k, and from scratch (BRIEF §7).

Depth k = the number of top blocks unfrozen, by whole blocks (the registry's block ends), never
cutting through one. k = 0 trains only a new head on the frozen backbone; k = n_blocks unfreezes
everything. The backbone runs in inference mode (BatchNorm keeps its moving statistics, dropout
is off) while its unfrozen weights train, as in the Keras transfer-learning guide. The guide's
`base(x, training=False)` is NOT enough in Keras 3.15: a functional model replays its graph with
the outer `fit`'s training=True over the node's explicit False (keras/src/models/functional.py,
`operation_fn`), so frozen BN statistics drift and frozen dropout stays on. `InferenceMode` wraps
the backbone and calls it with training=False itself, which Keras honours. The head is trained
first, then the unfrozen blocks at a lower learning rate, with a recompile after every change of
`trainable`. Scratch = same architecture, random init, every layer trainable and in training
mode (BatchNorm must learn its statistics).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import keras
import numpy as np

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
    from extract.backbones import block_layers

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


def build_model(base, num_classes: int, seed: int, bn_inference: bool = True):
    """A new head on `base`: pool if the output is spatial, dropout, softmax."""

    inputs = keras.Input(shape=base.input.shape[1:], name="image")
    x = InferenceMode(base, name="backbone")(inputs) if bn_inference else base(inputs)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = keras.layers.Dropout(0.2, seed=seed, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name=f"{base.name}_finetune")


def _compile(model, lr):
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])


def _fit(model, train_ds, val_ds, epochs, patience, what=""):
    if epochs <= 0:
        return {}
    cb = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                        restore_best_weights=True),
          keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: log.info(
              "%s epoch %d: %s", what, epoch + 1,
              ", ".join(f"{k} {float(v):.4g}" for k, v in (logs or {}).items())))]
    hist = model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=cb, verbose=0,
                     shuffle=False)  # the tf.data pipeline shuffles
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def train_at_depth(base, spec, depth, num_classes, train_ds, val_ds, fcfg, seed):
    """Train one baseline. Returns (model, history, epochs_run, trainable_params)."""

    keras.utils.set_random_seed(seed)
    history = {}
    if depth == "scratch":
        model = build_model(base, num_classes, seed, bn_inference=False)
        base.trainable = True
        _compile(model, fcfg["learning_rate"])
        history["scratch"] = _fit(model, train_ds, val_ds, fcfg["head_epochs"] + fcfg["epochs"],
                                  fcfg["patience"], "scratch")
    else:
        model = build_model(base, num_classes, seed, bn_inference=True)
        set_depth(base, spec, 0)
        _compile(model, fcfg["learning_rate"])  # recompile after every change of `trainable`
        head_epochs = fcfg["head_epochs"] + (fcfg["epochs"] if depth == 0 else 0)
        history["head"] = _fit(model, train_ds, val_ds, head_epochs, fcfg["patience"],
                               f"k={depth} head")
        if depth > 0:
            set_depth(base, spec, depth)
            _compile(model, fcfg["finetune_learning_rate"])
            history["finetune"] = _fit(model, train_ds, val_ds, fcfg["epochs"], fcfg["patience"],
                                       f"k={depth} fine-tune")
    epochs = sum(len(h.get("loss", [])) for h in history.values())
    return model, history, epochs, trainable_count(model)


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
