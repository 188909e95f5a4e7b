"""Backbone + images → embeddings: the compiled forward pass, and new images embedded like a store.

Why a compiled `tf.function` call and not `model.predict`: on CPU it reached 90-100 % of the
matmul peak where `predict` reached about half (BRIEF §12).
"""
from __future__ import annotations

import logging

import numpy as np

from backbones import pixels
from backbones.cut import cut_model
from backbones.inputs import image_pipeline, prepare_inputs
from backbones.registry import REGISTRY, BackboneSpec, is_pixels
from backbones.weights import load_backbone, with_precision
from cutpoint import datasets as cds

log = logging.getLogger("cutpoint.backbones")


def make_forward(model, spec: BackboneSpec, input_shape, resize_method: str = "bilinear"):
    """Compiled image batch → list of pooled cut outputs: `prepare_inputs`, then the model.

    The whole batch is resized here, in the graph, from the data's native size; a batch already
    at the input size is not touched. Outputs are float32 whatever the model computes in
    (extract.precision). input_shape: the model's (h, w, c).
    """
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def forward(x):
        out = model(prepare_inputs(x, spec, input_shape, resize_method), training=False)
        return [tf.cast(o, tf.float32) for o in (out if isinstance(out, (list, tuple)) else [out])]

    return forward


def embed_images(provenance: dict, cut: str, dataset, batch_size: int = 256) -> np.ndarray:
    """Embed new images exactly as a store was made: same backbone, weights, cut, pooling, input.

    `provenance` is a store's provenance (`store.provenance(path)`, also saved with every fitted
    classical model), so a model trained on a store can be applied to images it never saw.
    """
    want_c = (provenance.get("dataset_channels") or {}).get("channels") or \
        (provenance.get("data_shape") or [None] * 3)[-1]
    if want_c and cds.channels_of(dataset) != want_c:   # as the store's images were
        log.info("Converting the new images from %d to %d channels, like the store's.",
                 cds.channels_of(dataset), want_c)
        dataset = cds.with_channels(dataset, int(want_c))
    if cut not in provenance.get("cuts", {}):
        raise ValueError(f"Cut {cut!r} is not in the recorded extraction (cuts: "
                         f"{', '.join(provenance.get('cuts', {}))}).")
    if is_pixels(provenance.get("backbone")):
        return _embed_pixels(provenance, dataset)
    in_h, in_w, in_c = provenance["input_size"]
    import keras
    keras.utils.set_random_seed(provenance.get("seed", 0))  # as extraction did, for random init
    generic = provenance["backbone"] not in REGISTRY
    model, spec, _ = load_backbone(
        provenance["backbone"], weights=provenance["weights"], input_shape=(in_h, in_w, in_c),
        layer=list(provenance["cuts"].values()) if generic else None)
    model = with_precision(model, provenance.get("precision", "float32"))
    method = provenance.get("resize_method", "bilinear")
    forward = make_forward(cut_model(model, [provenance["cuts"][cut]], provenance["pooling"]),
                           spec, (in_h, in_w, in_c), method)
    order = np.arange(len(dataset))
    return np.concatenate([forward(x)[0].numpy() for x in
                           image_pipeline(dataset, order, batch_size, size=(in_h, in_w),
                                          method=method)])


def _embed_pixels(provenance: dict, dataset) -> np.ndarray:
    """The raw-pixel baseline's rows for new images, resized like the store's (from native)."""
    shape = tuple(provenance["input_size"])
    if provenance.get("resize_method") == "area":
        if shape[2] != (dataset.image_shape or shape)[2]:
            raise ValueError(f"The raw-pixel model expects {shape[2]}-channel images; got "
                             f"{dataset.image_shape[2]}.")
        batches = (pixels.pixel_batch(dataset, np.arange(s, min(s + 1024, len(dataset))),
                                      shape[:2]) for s in range(0, len(dataset), 1024))
    elif dataset.image_shape != shape:
        raise ValueError(f"The raw-pixel model expects images of shape {shape}; got "
                         f"{dataset.image_shape}.")
    else:
        batches = (x for _, x in dataset.iter_batches(batch_size=4096))
    return np.concatenate([pixels.scale(x) for x in batches])
