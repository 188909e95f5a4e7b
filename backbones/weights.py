"""Loading a backbone from any weights source, and the precision it computes in.

Weights come through ONE function, `load_backbone`: "none" (random init), "imagenet" (Keras
download/cache), a `.weights.h5` file, a whole saved model (`.keras` / legacy `.h5`), or a folder
written by `backbones.train` (model.keras + config.json). Every route returns the same triple
(model without top, spec, provenance dict). A saved model outside the registry gets a spec of its
own, cut at the layers the caller names.
"""
from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import keras

from backbones.cut import layer_names, require_layers
from backbones.inputs import check_input_size
from backbones.registry import (PREPROCESS_MODES, RANGES, REGISTRY, BackboneError, BackboneSpec,
                                Preprocess, describe_preprocess, get, with_preprocess)
from cutpoint.provenance import hash_file
from cutpoint.registry import did_you_mean

log = logging.getLogger("cutpoint.backbones")


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


def _weights_kind(weights) -> tuple[str, Path | None]:
    if weights is None or str(weights).lower() in ("none", "random", ""):
        return "none", None
    if str(weights).lower() == "imagenet":
        return "imagenet", None
    if str(weights) == "self":
        raise BackboneError("weights='self' means 'train the backbone first': call "
                            "backbones.train.train_backbone and pass the folder it returns.")
    path = Path(weights).expanduser()
    if path.is_dir():
        if not (path / "model.keras").is_file() or not (path / "config.json").is_file():
            raise BackboneError(f"Weights folder {str(path)!r} is not a cutpoint-trained backbone: "
                                "it needs model.keras and config.json (written by backbones.train).")
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
        f"{did_you_mean(str(weights).lower(), ['none', 'imagenet', 'random'])}")


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
            have = set(layer_names(model))
            if all(layer in have for layer in get(name).cuts.values()):
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
                            f"{did_you_mean(str(precision), PRECISIONS)}")
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
    require_layers(loaded, list(spec.cuts.values()) + list(spec.blocks), what)
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
            f"{', '.join(layer_names(loaded)[-8:])}.")
    require_layers(loaded, names, f"Saved model {str(path)!r}")
    preprocess = preprocess or "raw255"
    order = {n: i for i, n in enumerate(layer_names(loaded))}
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
                        input_range=RANGES[preprocess], preprocess_fn=Preprocess(preprocess),
                        cuts={n: n for n in names}, blocks=tuple(names))


def _network(name) -> BackboneSpec:
    spec = get(name)
    if spec.kind != "network":
        raise BackboneError(f"{name!r} is the raw-pixel baseline, not a network: there is nothing "
                            "to load, cut or fine-tune. Pick a network backbone, e.g. small_vgg.")
    return spec


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
                            f"Got {preprocess!r}.{did_you_mean(preprocess, PREPROCESS_MODES)}")

    if kind in ("none", "imagenet", "weights_file"):
        spec = _network(name)
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
                preprocess = get(nested["family"]).preprocess  # the base's own
        if name in REGISTRY:
            spec = _network(name)
            if preprocess:
                spec = with_preprocess(spec, preprocess)
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
    else:  # a folder written by backbones.train
        cfg = json.loads((path / "config.json").read_text())
        trained = cfg.get("backbone")
        if name not in (None, "", "self", trained):
            raise BackboneError(f"The folder {str(path)!r} holds a trained {trained!r}, but the "
                                f"backbone is set to {name!r}. Set backbone.name = {trained!r}.")
        spec = _network(trained)
        loaded = _load_saved(path / "model.keras")
        model = _fit_registry(loaded, spec, input_shape, f"Trained backbone {str(path)!r}")
        sha = hash_file(path / "model.keras")
        extra["trained"] = {k: cfg.get(k) for k in ("key", "seed", "val_accuracy", "data_hash",
                                                    "num_classes", "class_names", "code_version")}
    if kind != "saved_model" and layer is not None:
        require_layers(model, [layer] if isinstance(layer, str) else list(layer), spec.name)

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


