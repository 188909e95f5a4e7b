"""How images reach a backbone: the input size and channels, and the ONE input preparation.

`prepare_inputs` is the only place where images become a network's input — uint8 or float
[0, 255] → float32 at the backbone's size and channels (gray repeated to RGB, `tf.image.resize`
with backbone.resize_method, clipped to [0, 255]) → augmentation (training only) → the spec's
preprocessing. Extraction (`backbones.embed.make_forward`), self-training and fine-tuning
(`backbones.train.batches`) all call it, so the three cannot drift apart.

Importing this module does not import TensorFlow.
"""
from __future__ import annotations

import logging

import numpy as np

from backbones.registry import BackboneError, BackboneSpec
from cutpoint import datasets as cds

log = logging.getLogger("cutpoint.backbones")


# ---------------------------------------------------------------------------------- input sizes

def check_input_size(spec: BackboneSpec, size) -> None:
    """Refuse an input smaller than the backbone's minimum (it would fail or collapse to 0×0)."""
    sizes = [size] if isinstance(size, (int, float)) else list(size)
    if not sizes or any(int(s) != s or s < 1 for s in sizes):
        raise BackboneError(f"The input size must be a positive number of pixels. Got {size!r}.")
    if min(sizes) < spec.min_size:
        native = spec.native_size or "the data's size"
        raise BackboneError(
            f"Backbone {spec.name!r} needs inputs of at least {spec.min_size} px; got {size!r}. "
            f"Set backbone.input_size to at least {spec.min_size} (native: {native}); images are "
            "resized up with backbone.resize_method.")


def input_decision(spec: BackboneSpec, image_shape, requested_size: int = 0) -> dict:
    """Decide the model input (h, w, c) for images of `image_shape`, and say why (provenance)."""
    if image_shape is not None:
        image_shape = tuple(int(d) for d in image_shape)
        if len(image_shape) == 2:
            image_shape = (*image_shape, 1)
        if len(image_shape) != 3:
            raise BackboneError("An image shape is (height, width[, channels]). "
                                f"Got {image_shape!r}.")
    c = image_shape[2] if image_shape else 3
    repeat = False
    if spec.channels is None:
        out_c = c
    elif spec.channels == 3 and c == 1:
        out_c, repeat = 3, True
    elif c != spec.channels:
        raise BackboneError(f"Backbone {spec.name!r} takes {spec.channels}-channel images; the "
                            f"data has {c} channels. Set dataset.channels = {spec.channels} to "
                            f"convert them ({'RGB → gray by luminance' if spec.channels == 1 else 'gray → RGB by repetition'}).")
    else:
        out_c = c
    if requested_size:
        hw, why = (int(requested_size),) * 2, "backbone.input_size"
    elif spec.native_size:
        hw, why = (spec.native_size,) * 2, f"native size of {spec.name}"
    elif image_shape:
        hw, why = image_shape[:2], "the data's size"
    else:
        raise BackboneError("Images of different sizes need an explicit input size for "
                            f"{spec.name!r}: set backbone.input_size.")
    check_input_size(spec, hw)
    resized = image_shape is None or tuple(hw) != image_shape[:2]
    return {"input_shape": [*hw, out_c], "image_shape": list(image_shape or []), "resized": resized,
            "size_from": why, "channels_repeated": repeat}


def input_shape_for(spec: BackboneSpec, image_shape, requested_size: int = 0) -> tuple:
    """(h, w, c) for the model: gray → 3 channels for keras apps; native size unless requested."""
    d = input_decision(spec, image_shape, requested_size)
    log.info("%s input %s (from %s%s%s)", spec.name, tuple(d["input_shape"]), d["size_from"],
             ", resized from %s" % (tuple(d["image_shape"][:2]),) if d["resized"] and
             d["image_shape"] else "", ", gray repeated to 3 channels" if d["channels_repeated"]
             else "")
    return tuple(d["input_shape"])


def resize_note(data_shape, input_hw, method: str) -> str:
    """Where and how images reach the model's input size (provenance)."""
    h, w = input_hw
    if data_shape is None:
        return (f"mixed sizes: each image resized to {h}x{w} while decoding (Pillow "
                f"{cds.pil_filter_name(method)}, in parallel decode threads)")
    if tuple(data_shape[:2]) == (h, w):
        return "none (native size)"
    return (f"{data_shape[0]}x{data_shape[1]} to {h}x{w}: tf.image.resize ({method}) on whole "
            "batches inside the compiled forward pass")


# --------------------------------------------------------------------------------- channels

def apply_channels(cfg: dict, prepared: dict) -> dict:
    """`dataset.channels` = 1 or 3: the experiment's views with images converted to that many
    channels (RGB → gray by luminance, gray → RGB by repetition); "auto": unchanged (a 3-channel
    backbone repeats gray itself). Idempotent."""
    setting = cfg["dataset"].get("channels", "auto")
    if setting == "auto":
        return prepared
    out = dict(prepared)
    for role in ("source", "target"):
        if out.get(role) is not None:
            out[role] = cds.with_channels(out[role], int(setting))
    return out


def check_channels(name: str, model_c: int, data_c: int) -> None:
    """Refuse data whose channels the network cannot take (gray is repeated, RGB is not
    converted to gray without the user's say-so)."""
    if data_c == 3 and model_c == 1:
        raise ValueError(
            f"Backbone {name!r} takes 1-channel (grayscale) images; the data has 3 channels "
            "(RGB). Set dataset.channels = 1 to convert them to gray by luminance (in the config's "
            "[dataset] section, or `--set dataset.channels=1`).")
    if model_c not in (data_c, 3):
        raise ValueError(f"Backbone {name!r} takes {model_c}-channel images; the data has "
                         f"{data_c}. Set dataset.channels to {model_c}.")


# ------------------------------------------------------------------------ the input preparation

def prepare_inputs(x, spec: BackboneSpec, input_shape, resize_method: str = "bilinear",
                   augment=()):
    """Images (uint8 or float in [0, 255], batched) → what the network's input expects.

    Cast to float32; repeat gray to 3 channels when the input has 3; resize the whole batch to
    input_shape's (h, w) with `tf.image.resize(method=resize_method)`, clipped to [0, 255] (a
    batch already at that size is not touched); apply the `augment` layers (training); then the
    spec's preprocessing. input_shape: the model's (h, w, c).
    """
    import tensorflow as tf

    h, w, c = (int(d) for d in input_shape)
    x = tf.cast(x, tf.float32)
    if c == 3 and x.shape[-1] == 1:
        x = tf.repeat(x, 3, axis=-1)
    if tuple(x.shape[1:3]) != (h, w):
        x = tf.image.resize(x, (h, w), method=resize_method)
        x = tf.clip_by_value(x, 0.0, 255.0)
    for layer in augment:
        x = layer(x, training=True)
    return spec.preprocess_fn(x)


def check_range(spec: BackboneSpec, model_input) -> None:
    """Refuse inputs whose preprocessed values fall outside what the backbone expects (images
    rescaled to [0, 1] before they got here, typically)."""
    import tensorflow as tf

    lo, hi = float(tf.reduce_min(model_input)), float(tf.reduce_max(model_input))
    want_lo, want_hi = spec.input_range
    slack = 0.05 * (want_hi - want_lo)
    if lo < want_lo - slack or hi > want_hi + slack:
        raise ValueError(
            f"Backbone {spec.name!r} expects preprocessed input in [{want_lo}, {want_hi}] "
            f"({spec.preprocess} preprocessing of [0, 255] images) but got [{lo:.3g}, {hi:.3g}]. "
            "Images must be uint8 in [0, 255]; do not rescale them before extraction.")


def image_pipeline(dataset, order, batch_size, start=0, size=None, method="bilinear"):
    """tf.data over row batches: parallel decode (folder images decode in PIL threads), prefetch.

    Only a few batches are in memory at a time, so memory stays flat as the dataset grows. Yields
    uint8 batches in row order (deterministic). Same-size data comes at its native size (the
    forward pass resizes whole batches); only images of different sizes (folders) are resized,
    to `size` with `method`'s Pillow filter, while decoding, so that they can be batched.
    """
    import tensorflow as tf

    order = np.asarray(order)
    starts = np.arange(start, len(order), batch_size, dtype=np.int64)
    size = None if dataset.image_shape is not None else size
    if dataset.image_shape is None and size is None:
        raise ValueError(f"Dataset {dataset.name!r} has images of different sizes; pass the size "
                         "to resize them to (backbone.input_size).")
    shape = dataset.image_shape or (*size, dataset.images(order[:1], size=size).shape[-1])

    def load(s):
        idx = order[int(s):int(s) + batch_size]
        return dataset.images(idx, size=size, method=method).astype(np.uint8, copy=False)

    ds = tf.data.Dataset.from_tensor_slices(starts)
    ds = ds.map(lambda s: tf.numpy_function(load, [s], tf.uint8),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(lambda x: tf.ensure_shape(x, (None, *shape)))
    return ds.prefetch(2)
