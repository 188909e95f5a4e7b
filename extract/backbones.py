"""Backbone registry (timm style), weights from every source, and truncation at cut points.

One dict, name → `BackboneSpec`: how to build the model without its classification top, the input
size rules, the family's own preprocessing and the range it produces, the cut points (stable short
aliases → exact Keras layer names at block ends, shallow → deep) and the blocks that define
fine-tuning depth. Widths are never written down: `cut_widths` reads them off the built graph.

Weights come through ONE function, `load_backbone`: "none" (random init), "imagenet" (Keras
download/cache), a `.weights.h5` file, a whole saved model (`.keras` / legacy `.h5`), or a folder
written by `extract.train` (model.keras + config.json). Every route returns the same triple
(model without top, spec, provenance dict).

Truncation goes through the base model's OWN input — `Model(base.input, [base.get_layer(n).output
…])` — because tapping layers through a wrapper model raises "Graph disconnected" (keras#16123);
pooling is a separate layer per cut so several cut points come out of one forward pass.
"""
from __future__ import annotations

import difflib
import json
import logging
import math
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import keras
import tensorflow as tf

from cutpoint.provenance import hash_file
from extract import models as own_models

log = logging.getLogger("cutpoint.backbones")

POOLINGS = ("avg", "max", "avgmax", "flatten", "none")
PREPROCESS_MODES = ("caffe", "torch", "tf", "raw255", "unit")
FLATTEN_WARN = 50_000

# The range each preprocessing maps [0, 255] to (what the model INPUT sees).
_CAFFE = (-123.68, 255.0 - 103.939)              # BGR, ImageNet means subtracted, no scaling
_TORCH = ((0 - 0.485) / 0.229, (1 - 0.406) / 0.225)  # x/255, ImageNet mean/std per channel
_TF = (-1.0, 1.0)                                 # x/127.5 - 1
_RANGES = {"caffe": _CAFFE, "torch": _TORCH, "tf": _TF, "raw255": (0.0, 255.0), "unit": (0.0, 1.0)}


class BackboneError(ValueError):
    """Bad backbone name, weights source, input shape or cut point (user input)."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str
    builder: Callable          # (input_shape, weights) -> keras.Model without classification top
    native_size: int           # 0 = the data's own size (own CNNs)
    min_size: int
    channels: int | None       # None = any (own CNNs take the data's channels)
    preprocess: str            # caffe | torch | tf | raw255 | unit
    input_range: tuple         # range of the model input after preprocess_fn
    cuts: dict                 # alias -> layer name, shallow -> deep, at block ends
    blocks: tuple              # block-end layer names, shallow -> deep (fine-tuning depth)
    own: bool                  # the project's own CNN, trainable by `extract.train`


# ---------------------------------------------------------------------------------- the registry

def _keras_app(fn_name: str) -> Callable:
    def build(input_shape, weights=None):
        fn = getattr(keras.applications, fn_name)
        shape = tuple(int(d) for d in input_shape)
        return fn(include_top=False, weights=weights, input_shape=shape)
    build.__name__ = f"build_{fn_name}"
    return build


def _own(name: str) -> Callable:
    def build(input_shape, weights=None):
        if weights not in (None, "none"):
            raise BackboneError(
                f"{name} is one of cutpoint's own CNNs and has no {weights!r} weights. Train it "
                "(backbone.weights = 'self') or pass a cutpoint-trained folder or weights file.")
        return own_models.build_trunk(name, input_shape)
    build.__name__ = f"build_{name}"
    return build


def _app(name, family, fn_name, native, minimum, preprocess, cuts):
    return BackboneSpec(name=name, family=family, builder=_keras_app(fn_name), native_size=native,
                        min_size=minimum, channels=3, preprocess=preprocess,
                        input_range=_RANGES[preprocess], cuts=dict(cuts),
                        blocks=tuple(cuts.values()), own=False)


def _own_spec(name):
    _, ends = own_models.OWN_MODELS[name]
    cuts = {f"block{i}": layer for i, layer in enumerate(ends, start=1)}
    cuts["fc"] = "fc"
    # preprocess "unit" = x/255, done by the model's own Rescaling layer: it consumes [0, 255].
    return BackboneSpec(name=name, family="own", builder=_own(name), native_size=0,
                        min_size=own_models.MIN_SIZE, channels=None, preprocess="unit",
                        input_range=(0.0, 255.0), cuts=cuts, blocks=tuple(cuts.values()), own=True)


_VGG_CUTS = {f"block{i}": f"block{i}_pool" for i in range(1, 6)}

REGISTRY: dict[str, BackboneSpec] = {s.name: s for s in [
    *(_own_spec(n) for n in own_models.OWN_MODELS),
    _app("vgg16", "vgg", "VGG16", 224, 32, "caffe", _VGG_CUTS),
    _app("vgg19", "vgg", "VGG19", 224, 32, "caffe", _VGG_CUTS),
    _app("resnet50", "resnet", "ResNet50", 224, 32, "caffe",
         {"conv2": "conv2_block3_out", "conv3": "conv3_block4_out",
          "conv4": "conv4_block6_out", "conv5": "conv5_block3_out"}),
    _app("mobilenet_v2", "mobilenet_v2", "MobileNetV2", 224, 32, "tf",
         {"block2": "block_2_add", "block5": "block_5_add", "block12": "block_12_add",
          "block16": "block_16_project_BN", "top": "out_relu"}),
    # EfficientNet rescales and normalises inside the graph: it wants [0, 255] (tensorflow#48412).
    _app("efficientnet_b0", "efficientnet", "EfficientNetB0", 224, 32, "raw255",
         {"block2": "block2b_add", "block3": "block3b_add", "block5": "block5c_add",
          "block7": "block7a_project_bn", "top": "top_activation"}),
    _app("inception_v3", "inception", "InceptionV3", 299, 75, "tf",
         {"mixed2": "mixed2", "mixed5": "mixed5", "mixed7": "mixed7", "mixed9": "mixed9",
          "mixed10": "mixed10"}),
    # DenseNet is pre-activation: tap the BN+ReLU that opens each transition (as timm does).
    _app("densenet121", "densenet", "DenseNet121", 224, 32, "torch",
         {"block1": "pool2_relu", "block2": "pool3_relu", "block3": "pool4_relu",
          "block4": "relu"}),
]}

# Each family owns its preprocess_input (keras.applications.<module>).
_PREPROCESS_MODULE = {"vgg": "vgg16", "resnet": "resnet50", "mobilenet_v2": "mobilenet_v2",
                      "efficientnet": "efficientnet", "inception": "inception_v3",
                      "densenet": "densenet"}


def _did_you_mean(name, options, n=1) -> str:
    match = difflib.get_close_matches(str(name), list(options), n=n)
    if not match:
        return ""
    return " Did you mean " + " or ".join(f"{m!r}" for m in match) + "?"


def list_backbones(own: bool | None = None) -> list[str]:
    """Registry names (own CNNs first); `own=True/False` filters."""
    return [n for n, s in REGISTRY.items() if own is None or s.own == own]


def get_spec(name: str) -> BackboneSpec:
    if name not in REGISTRY:
        raise BackboneError(
            f"Unknown backbone {name!r}. Available: {', '.join(REGISTRY)}."
            f"{_did_you_mean(name, REGISTRY)}"
            " A saved Keras model can be used under any other name with weights = "
            "path/to/model.keras and the layer(s) to cut.")
    return REGISTRY[name]


# ------------------------------------------------------------------------------- preprocessing

def preprocess_fn(spec: BackboneSpec) -> Callable:
    """float tensor in [0, 255] (RGB, or gray for a 3-channel backbone) → what the model expects.

    Always returns a new tensor: Keras' preprocess_input modifies float numpy arrays in place.
    """
    entry = REGISTRY.get(spec.name)
    module = _PREPROCESS_MODULE.get(spec.family)
    if module is not None and entry is not None and entry.preprocess == spec.preprocess:
        fn = getattr(keras.applications, module).preprocess_input
    elif spec.preprocess in ("caffe", "torch", "tf"):
        def fn(x):
            return keras.applications.imagenet_utils.preprocess_input(x, mode=spec.preprocess)
    elif spec.preprocess == "unit" and spec.input_range[1] <= 1.0:
        def fn(x):
            return x / 255.0
    else:  # raw255, or "unit" done by the model's own Rescaling layer (own CNNs)
        def fn(x):
            return x

    def preprocess(x):
        x = tf.cast(x, tf.float32)
        if spec.channels == 3 and x.shape[-1] == 1:
            x = tf.repeat(x, 3, axis=-1)
        return fn(x)

    preprocess.__name__ = f"preprocess_{spec.preprocess}"
    return preprocess


def describe_preprocess(spec: BackboneSpec) -> str:
    if spec.own:
        return "unit (x/255 in the model: feed [0, 255])"
    return {"caffe": "caffe (RGB→BGR, minus ImageNet means)", "torch": "torch (x/255, ImageNet "
            "mean/std)", "tf": "tf (x/127.5 - 1)", "raw255": "raw255 ([0, 255], scaled in-graph)",
            "unit": "unit (x/255)"}.get(spec.preprocess, spec.preprocess)


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


def _build_shape(spec: BackboneSpec, input_shape, weights_kind: str) -> tuple:
    if input_shape is None:
        if not spec.native_size:
            raise BackboneError(f"{spec.name} is built for the data's size: pass input_shape="
                                "(height, width, channels), e.g. from input_shape_for().")
        input_shape = (spec.native_size, spec.native_size, spec.channels or 3)
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3:
        raise BackboneError(f"input_shape must be (height, width, channels). Got {input_shape!r}.")
    if spec.channels is not None and shape[2] != spec.channels:
        extra = " ImageNet weights are RGB." if weights_kind == "imagenet" else ""
        raise BackboneError(
            f"Backbone {spec.name!r} takes {spec.channels}-channel input; got input_shape "
            f"{shape}.{extra} Build it with {spec.channels} channels, e.g. "
            f"{(*shape[:2], spec.channels)}: the extractor repeats a grayscale channel "
            "(input_shape_for does this).")
    check_input_size(spec, shape[:2])
    return shape


# ------------------------------------------------------------------------------ weights sources

def _weights_kind(weights) -> tuple[str, Path | None]:
    if weights is None or str(weights).lower() in ("none", "random", ""):
        return "none", None
    if str(weights).lower() == "imagenet":
        return "imagenet", None
    if str(weights) == "self":
        raise BackboneError("weights='self' means 'train the backbone first': call "
                            "extract.train.train_backbone and pass the folder it returns.")
    path = Path(weights).expanduser()
    if path.is_dir():
        if not (path / "model.keras").is_file() or not (path / "config.json").is_file():
            raise BackboneError(f"Weights folder {str(path)!r} is not a cutpoint-trained backbone: "
                                "it needs model.keras and config.json (written by extract.train).")
        return "trained", path
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".weights.h5"):
            return "weights_file", path
        if name.endswith(".keras"):
            return "saved_model", path
        if name.endswith((".h5", ".hdf5")):
            return "h5", path  # a whole legacy model, or legacy weights only: decided on loading
        raise BackboneError(f"Unrecognised weights file {str(path)!r}: expected *.weights.h5 "
                            "(weights), *.keras or *.h5 (a whole saved model).")
    raise BackboneError(
        f"weights must be 'none', 'imagenet', a path to a *.weights.h5 / *.keras / *.h5 file, or a "
        f"cutpoint-trained folder. Got {str(weights)!r}, which is none of these (no such file)."
        f"{_did_you_mean(str(weights).lower(), ['none', 'imagenet', 'random'])}")


def _short_error(e: Exception, limit: int = 500) -> str:
    """Keras' load errors print whole tensors: keep the sentence that says what mismatched."""
    text = str(e).split("Target variable:")[0]
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[:limit] + " …"


def _load_weights_file(model, path: Path, spec: BackboneSpec):
    """model.load_weights, with Keras' partial-load warnings turned into an error.

    A file with MORE layers than the model (e.g. the classifier's weights into its trunk) loads
    the matching layers: that is how a backbone is taken from a trained classifier.
    """
    problem = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(str(path))
        except (ValueError, KeyError, OSError, TypeError, IndexError) as e:
            problem = _short_error(e)
    if problem is None:
        partial = [str(w.message) for w in caught if "freshly-initialized" in str(w.message)]
        problem = _short_error(partial[0]) if partial else None
        for w in caught:
            if "freshly-initialized" not in str(w.message):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if problem:
        raise BackboneError(
            f"Weights file {str(path)!r} does not fit backbone {spec.name!r} built with input "
            f"shape {tuple(model.input.shape[1:])}: {problem} Save the weights from the same "
            "architecture (backbone.save_weights(...)), or pass a whole saved model (.keras) "
            "instead.")


def _load_saved(path: Path):
    try:
        return keras.models.load_model(str(path), compile=False, safe_mode=True)
    except (ValueError, OSError, TypeError, KeyError) as e:
        raise BackboneError(f"Could not load the saved Keras model {str(path)!r}: "
                            f"{_short_error(e)}") from None


# Keras application model names (prefix) → registry entry: a nested base of one of these
# families brings its aliases and its own preprocessing.
_FAMILY_PREFIXES = {"mobilenetv2": "mobilenet_v2", "resnet50": "resnet50", "vgg16": "vgg16",
                    "vgg19": "vgg19", "efficientnetb0": "efficientnet_b0",
                    "inception_v3": "inception_v3", "densenet121": "densenet121"}


def registry_family(model) -> str | None:
    """The registry name of a Keras application model (by its name and cut layers), else None."""
    for prefix, name in _FAMILY_PREFIXES.items():
        if model.name.lower().startswith(prefix):
            have = set(_layer_names(model))
            if all(layer in have for layer in REGISTRY[name].cuts.values()):
                return name
    return None


def _replay(layer, x):
    """A fresh copy of `layer` (same config and weights) applied to `x`: its only node is then
    in the new graph, so `.output` of that layer is connected to the new graph's input."""
    new = keras.layers.deserialize(keras.layers.serialize(layer))
    y = new(x)
    new.set_weights(layer.get_weights())
    return y


def flatten_nested(model):
    """A whole model whose backbone is a nested Model layer (``Input → <base Model> → GAP →
    Dropout → Dense``, functional or Sequential) → ONE flat functional model built from the
    nested model's own input, so its inner layers AND the top-level layers after it can be cut.

    Tapping the inner layers through the wrapper gives "Graph disconnected" / "Output … is not
    connected to `inputs`" (keras#16123, #16355). The top-level layers after the base are
    re-applied (fresh copies with the same weights) on the base's output; layers BEFORE the base
    (augmentation, rescaling) are left out — the base's own preprocessing replaces them — and
    listed. Returns (model, info); info is None for a model without a nested Model.
    """
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if not nested:
        return model, None
    inner = max(nested, key=lambda m: len(m.layers))
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    i = layers.index(inner)
    before, after = layers[:i], layers[i + 1:]
    x, kept = inner.output, []
    for layer in after:
        try:
            x = _replay(layer, x)
        except Exception as e:  # noqa: BLE001 — a non-linear head: keep what chains
            log.warning("Top-level layers from %r on are not a chain after %r (%s): they cannot "
                        "be cut.", layer.name, inner.name, _short_error(e, 120))
            break
        kept.append(layer.name)
    flat = keras.Model(inner.input, x, name=model.name)
    if before:
        log.warning("Layers before the nested base %r are left out: %s (the base's own "
                    "preprocessing is used).", inner.name, [b.name for b in before])
    return flat, {"nested_model": inner.name, "family": registry_family(inner),
                  "top_layers": kept, "left_out_before": [b.name for b in before]}


def _clone_at(trunk, shape, what: str):
    """The same architecture and weights at another input size (any variant of a family,
    e.g. MobileNetV2 with alpha 0.35, which the registry builder does not make)."""
    try:
        clone = keras.models.clone_model(trunk, input_tensors=keras.Input(shape))
        clone.set_weights(trunk.get_weights())
    except Exception as e:  # noqa: BLE001
        raise BackboneError(f"{what} cannot be rebuilt at input shape {tuple(shape)}: "
                            f"{_short_error(e)} Set backbone.input_size to 0 (its saved size)."
                            ) from None
    return clone


# `extract.precision` → the Keras dtype policy (keras.mixed_precision): float32 variables, the
# compute in the named dtype. "bfloat16" is Keras' mixed_bfloat16 (weights stay float32).
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16",
              "mixed_float16": "mixed_float16"}


def with_precision(model, precision: str = "float32"):
    """`model` computing in `precision` (see PRECISIONS); float32 returns the model itself.

    Why a clone: a global policy only reaches layers built after it is set, and a loaded model
    (a self-trained backbone, a .keras file) brings each layer's saved float32 policy. So every
    layer is rebuilt from its config with the new policy and the weights are copied over.
    """
    if precision not in PRECISIONS:
        raise BackboneError(f"The 'extract.precision' setting must be one of "
                            f"{', '.join(PRECISIONS)}. Got {precision!r} instead."
                            f"{_did_you_mean(str(precision), PRECISIONS)}")
    if precision == "float32":
        return model
    policy = PRECISIONS[precision]

    def rebuild(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": policy})

    try:
        clone = keras.models.clone_model(model, clone_function=rebuild)
        clone.set_weights(model.get_weights())
    except Exception as e:  # noqa: BLE001
        raise BackboneError(f"{model.name!r} cannot be rebuilt in {precision}: "
                            f"{_short_error(e)} Set extract.precision = \"float32\".") from None
    return clone


def _layer_names(model) -> list[str]:
    return [layer.name for layer in model.layers]


def _require_layers(model, names, what: str):
    have = set(_layer_names(model))
    for n in names:
        if n not in have:
            raise BackboneError(f"{what}: layer {n!r} is not in the model."
                                f"{_did_you_mean(n, have, 3)} Its last layers: "
                                f"{', '.join(_layer_names(model)[-8:])}.")


def _copy_weights(src, dst, what: str):
    """Copy weights layer by layer in graph order (same builder ⇒ same order and shapes)."""
    s = [layer for layer in src.layers if layer.weights]
    d = [layer for layer in dst.layers if layer.weights]
    if len(s) != len(d):
        raise BackboneError(f"{what}: {len(s)} layers with weights, but the architecture built at "
                            f"the requested size has {len(d)}.")
    for a, b in zip(s, d):
        wa = a.get_weights()
        got, want = [w.shape for w in wa], [w.shape for w in b.get_weights()]
        if got != want:
            raise BackboneError(f"{what}: layer {a.name!r} has weights of shapes {got}, "
                                f"expected {want}.")
        b.set_weights(wa)


def _fit_registry(loaded, spec: BackboneSpec, input_shape, what: str):
    """A loaded whole model under a registry spec: check its cut layers, drop the top, resize."""
    _require_layers(loaded, list(spec.cuts.values()) + list(spec.blocks), what)
    trunk = keras.Model(loaded.input, loaded.get_layer(spec.blocks[-1]).output, name=loaded.name)
    have = tuple(trunk.input.shape[1:])
    if input_shape is None or tuple(int(d) for d in input_shape) == have:
        return trunk
    shape = _build_shape(spec, input_shape, "saved")
    if have[2] is not None and shape[2] != have[2]:
        raise BackboneError(f"{what} was saved for {have[2]}-channel input; got input_shape "
                            f"{shape}. Set dataset.channels = {have[2]} to convert the images.")
    if spec.own:
        rebuilt = spec.builder(shape, None)
        _copy_weights(trunk, rebuilt, what)
    else:  # the saved graph itself at the new size: any variant of the family (alpha 0.35 …)
        rebuilt = _clone_at(trunk, shape, what)
    log.info("%s: rebuilt at input %s (saved at %s), weights copied", what, shape, have)
    return rebuilt


def _generic_spec(name, loaded, layer, preprocess, path: Path) -> BackboneSpec:
    names = [layer] if isinstance(layer, str) else list(layer or [])
    if not names:
        raise BackboneError(
            f"{name!r} is not a registry backbone, so the saved model {str(path)!r} needs the "
            f"layer(s) to cut: pass layer='name' (or extract.cuts). Its last layers: "
            f"{', '.join(_layer_names(loaded)[-8:])}.")
    _require_layers(loaded, names, f"Saved model {str(path)!r}")
    preprocess = preprocess or "raw255"
    order = {n: i for i, n in enumerate(_layer_names(loaded))}
    names = sorted(dict.fromkeys(names), key=order.get)
    h, w, c = (loaded.input.shape[1:] + (None,) * 3)[:3]
    fixed = h if (h is not None and h == w) else 0

    def builder(input_shape=None, weights=None):
        """Same architecture, fresh random weights (training from scratch)."""
        if weights not in (None, "none"):
            raise BackboneError(f"saved:{path.name} can only be rebuilt with random weights.")
        return keras.models.clone_model(loaded)

    return BackboneSpec(name=f"saved:{path.name}", family="saved", builder=builder,
                        native_size=fixed, min_size=fixed or 1, channels=c, preprocess=preprocess,
                        input_range=_RANGES[preprocess], cuts={n: n for n in names},
                        blocks=tuple(names), own=False)


def load_backbone(name, weights="none", input_shape=None, layer=None, *, preprocess=None):
    """Build or load a backbone without its classification top, from any weights source.

    Returns (model, spec, provenance). `layer` names the cut layer(s) of a saved model that is not
    in the registry; `preprocess` says what such a model expects ("raw255" = [0, 255] as is, the
    default; "unit" = x/255; or caffe/torch/tf). `input_shape` = (h, w, c); None = native/saved.
    """
    kind, path = _weights_kind(weights)
    extra = {}
    if kind == "h5":
        try:
            loaded = keras.models.load_model(str(path), compile=False, safe_mode=True)
            kind = "saved_model"
        except (ValueError, OSError, TypeError, KeyError) as e:
            if "No model config" not in str(e):
                raise BackboneError(f"Could not load {str(path)!r}: {_short_error(e)}") from None
            kind = "weights_file"  # legacy weights-only .h5 (e.g. Keras' *_notop.h5 downloads)
    if preprocess is not None and preprocess not in PREPROCESS_MODES:
        raise BackboneError(f"preprocess must be one of {', '.join(PREPROCESS_MODES)}. "
                            f"Got {preprocess!r}.{_did_you_mean(preprocess, PREPROCESS_MODES)}")

    if kind in ("none", "imagenet", "weights_file"):
        spec = get_spec(name)
        shape = _build_shape(spec, input_shape, kind)
        if kind == "imagenet" and spec.own:
            raise BackboneError(f"{spec.name} is one of cutpoint's own CNNs: there are no "
                                "ImageNet weights for it. Use weights='self' (train it) or a "
                                "trained folder.")
        try:
            model = spec.builder(shape, "imagenet" if kind == "imagenet" else None)
        except BackboneError:
            raise
        except Exception as e:  # a failed download: say what to do offline
            if kind != "imagenet":
                raise
            raise RuntimeError(f"Could not get the ImageNet weights of {spec.name} ({e}). "
                               "Without a network, pass a local weights file: "
                               "weights='path/to/x.h5'.") from e
        if kind == "weights_file":
            _load_weights_file(model, path, spec)
        sha = {"none": "random", "imagenet": "imagenet"}.get(kind) or hash_file(path)
    elif kind == "saved_model":
        if path.name.lower().endswith(".keras"):
            loaded = _load_saved(path)
        what = f"Saved model {str(path)!r}"
        loaded, nested = flatten_nested(loaded)
        if nested:
            extra["nested"] = nested
            if preprocess is None and nested["family"] and name not in REGISTRY:
                preprocess = REGISTRY[nested["family"]].preprocess  # the base's own
        if name in REGISTRY:
            spec = REGISTRY[name]
            if preprocess and preprocess != spec.preprocess:
                spec = replace(spec, preprocess=preprocess, input_range=_RANGES[preprocess])
            model = _fit_registry(loaded, spec, input_shape, what)
        else:
            spec = _generic_spec(name, loaded, layer, preprocess, path)
            model = loaded
            have = tuple(model.input.shape[1:])
            if input_shape is not None and any(
                    a is not None and a != int(b) for a, b in zip(have, input_shape)):
                raise BackboneError(f"{what} takes input of shape {have}; got input_shape "
                                    f"{tuple(input_shape)}. Set backbone.input_size to its size.")
        sha = hash_file(path)
    else:  # a folder written by extract.train
        cfg = json.loads((path / "config.json").read_text())
        trained = cfg.get("backbone")
        if name not in (None, "", "self", trained):
            raise BackboneError(f"The folder {str(path)!r} holds a trained {trained!r}, but the "
                                f"backbone is set to {name!r}. Set backbone.name = {trained!r}.")
        spec = get_spec(trained)
        loaded = _load_saved(path / "model.keras")
        model = _fit_registry(loaded, spec, input_shape, f"Trained backbone {str(path)!r}")
        sha = hash_file(path / "model.keras")
        extra["trained"] = {k: cfg.get(k) for k in ("key", "seed", "val_accuracy", "data_hash",
                                                    "num_classes", "class_names", "code_version")}
    if kind != "saved_model" and layer is not None:
        _require_layers(model, [layer] if isinstance(layer, str) else list(layer), spec.name)

    provenance = {
        "backbone": spec.name, "name": name, "family": spec.family,
        "weights": "none" if kind == "none" else ("imagenet" if kind == "imagenet" else str(path)),
        "weights_kind": {"none": "random"}.get(kind, kind), "weights_sha256": sha,
        "input_shape": [int(d) if d is not None else None for d in model.input.shape[1:]],
        "preprocess": spec.preprocess, "preprocess_detail": describe_preprocess(spec),
        "input_range": list(spec.input_range), "layers": dict(spec.cuts),
        "blocks": list(spec.blocks), "keras_version": keras.__version__, **extra,
    }
    return model, spec, provenance


# --------------------------------------------------------------------------------- cut points

def resolve_cuts(model, spec: BackboneSpec, cuts) -> list[tuple[str, str]]:
    """Aliases or exact layer names → [(alias, layer name)], shallow → deep; [] = all cuts."""
    if isinstance(cuts, str):
        cuts = [cuts]
    order = {n: i for i, n in enumerate(_layer_names(model))}
    by_layer = {layer: alias for alias, layer in spec.cuts.items()}
    pairs = {}
    for c in (list(cuts) or list(spec.cuts)):
        if c in spec.cuts:
            alias, layer = c, spec.cuts[c]
        elif c in order:
            alias, layer = by_layer.get(c, c), c
        else:
            close = difflib.get_close_matches(str(c), list(order), n=5, cutoff=0.4)
            hint = f" Close layer names: {', '.join(repr(m) for m in close)}." if close else ""
            raise BackboneError(
                f"Unknown cut point {c!r} for backbone {spec.name!r}. Expected one of its aliases "
                f"({', '.join(spec.cuts)}) or an exact Keras layer name of the model."
                f"{_did_you_mean(c, spec.cuts)}{hint}")
        if layer not in order:
            raise BackboneError(f"Cut point {alias!r} of {spec.name!r} is layer {layer!r}, which "
                                f"this model does not have.{_did_you_mean(layer, order, 3)}")
        pairs.setdefault(layer, alias)
    return sorted(((a, n) for n, a in pairs.items()), key=lambda p: order[p[1]])


def block_layers(model, spec: BackboneSpec) -> list[list[str]]:
    """Layer names per fine-tuning block: block j = after block j-1's end up to its own end."""
    _require_layers(model, spec.blocks, f"Blocks of {spec.name!r}")
    ends = list(spec.blocks)
    groups, j = [[] for _ in ends], 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        groups[j].append(layer.name)
        if j < len(ends) - 1 and layer.name == ends[j]:
            j += 1
    return groups


def _pool(t, layer_name: str, pooling: str):
    rank = len(t.shape)
    if rank == 2:
        return t  # dense output: already one vector per image
    if rank not in (3, 4):
        raise BackboneError(f"Layer {layer_name!r} has output shape {tuple(t.shape)}; cut points "
                            "must be dense (2-D) or convolutional (3-D/4-D) outputs.")
    L = keras.layers
    avg = L.GlobalAveragePooling2D if rank == 4 else L.GlobalAveragePooling1D
    mx = L.GlobalMaxPooling2D if rank == 4 else L.GlobalMaxPooling1D
    if pooling == "avg":
        return avg(name=f"cut_{layer_name}_avg")(t)
    if pooling == "max":
        return mx(name=f"cut_{layer_name}_max")(t)
    if pooling == "avgmax":
        return L.Concatenate(name=f"cut_{layer_name}_avgmax")(
            [avg(name=f"cut_{layer_name}_avgpart")(t), mx(name=f"cut_{layer_name}_maxpart")(t)])
    if pooling == "flatten":
        n = math.prod(t.shape[1:]) if None not in t.shape[1:] else None
        if n is None or n > FLATTEN_WARN:
            count = n or "an unknown number of"
            warnings.warn(f"pooling='flatten' at {layer_name!r} gives {count} features per image "
                          f"(above {FLATTEN_WARN:,}): slow and memory-hungry "
                          "for classical models. 'avg' or 'avgmax' keep one value per channel.",
                          stacklevel=3)
        return L.Flatten(name=f"cut_{layer_name}_flatten")(t)
    return t  # "none": the raw feature map


def _check_pooling(pooling):
    if pooling not in POOLINGS:
        raise BackboneError(f"pooling must be one of {', '.join(POOLINGS)}. Got {pooling!r}."
                            f"{_did_you_mean(pooling, POOLINGS)}")


def cut_model(model, layer_names, pooling: str = "avg"):
    """One model, one forward pass, one pooled output per cut layer (in the order given).

    Built from `model`'s own input (keras#16123). A single cut gives a model whose call returns a
    tensor rather than a 1-element list (Keras unwraps it).
    """
    _check_pooling(pooling)
    names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
    if not names or len(set(names)) != len(names):
        raise BackboneError(f"cut_model needs distinct layer names. Got {names!r}.")
    _require_layers(model, names, f"Cutting {model.name!r}")
    outputs = [_pool(model.get_layer(n).output, n, pooling) for n in names]
    return keras.Model(model.input, outputs, name=f"{model.name}_cut")


def cut_widths(model, layer_names, pooling: str = "avg") -> list[int]:
    """Feature count per cut from the symbolic output shapes (never hard-coded)."""
    _check_pooling(pooling)
    names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
    _require_layers(model, names, f"Cutting {model.name!r}")
    widths = []
    for n in names:
        shape = tuple(model.get_layer(n).output.shape[1:])
        if len(shape) == 1 or pooling in ("avg", "max"):
            widths.append(int(shape[-1]))
        elif pooling == "avgmax":
            widths.append(2 * int(shape[-1]))
        elif None in shape:
            raise BackboneError(f"pooling={pooling!r} at {n!r} needs a fixed input size; the model "
                                f"gives {shape}. Build it with a fixed input_shape.")
        else:
            widths.append(math.prod(int(d) for d in shape))
    return widths


# ------------------------------------------------------------------------------ the --list table

def describe_registry(input_size_small: bool = True) -> str:
    """The registry as a text table, widths from a dry run (random weights, avg pooling).

    Small inputs keep it fast (own CNNs at 32 px, applications at their minimum size); widths with
    avg pooling are the channel counts, which do not depend on the input size.
    """
    lines = [f"{'backbone':<16}{'family':<14}{'size native/min':<17}{'channels':<10}preprocess "
             "→ input range", "  cut alias → Keras layer → width (avg pooling)"]
    for spec in REGISTRY.values():
        size = 32 if spec.own else (spec.min_size if input_size_small else spec.native_size)
        model = spec.builder((size, size, spec.channels or 3), None)
        pairs = resolve_cuts(model, spec, [])
        widths = cut_widths(model, [n for _, n in pairs], "avg")
        lo, hi = spec.input_range
        native = spec.native_size or "data"
        lines.append("")
        lines.append(f"{spec.name:<16}{spec.family:<14}{f'{native}/{spec.min_size}':<17}"
                     f"{spec.channels or 'any':<10}{describe_preprocess(spec)} "
                     f"→ [{lo:g}, {hi:g}]")
        for (alias, layer), width in zip(pairs, widths):
            lines.append(f"  {alias:<10} → {layer:<22} → {width}")
        del model
    lines.append("")
    lines.append("Weights: none | imagenet | path/to/*.weights.h5 | path/to/model.keras or .h5 "
                 "(+ layer) | a cutpoint-trained folder. Own CNNs: weights = 'self' trains them.")
    return "\n".join(lines)
