"""Cutting a built backbone: cut points, pooling, widths, fine-tuning blocks, the --list table.

Truncation goes through the base model's OWN input — `Model(base.input, [base.get_layer(n).output
…])` — because tapping layers through a wrapper model raises "Graph disconnected" (keras#16123);
pooling is a separate layer per cut so several cut points come out of one forward pass.
"""
from __future__ import annotations

import difflib
import math
import warnings

import keras

from backbones.registry import REGISTRY, BackboneError, BackboneSpec, describe_preprocess
from cutpoint.registry import did_you_mean

POOLINGS = ("avg", "max", "avgmax", "flatten", "none")
FLATTEN_WARN = 50_000


def layer_names(model) -> list[str]:
    return [layer.name for layer in model.layers]


def require_layers(model, names, what: str):
    have = set(layer_names(model))
    for n in names:
        if n not in have:
            raise BackboneError(f"{what}: layer {n!r} is not in the model."
                                f"{did_you_mean(n, have, 3)} Its last layers: "
                                f"{', '.join(layer_names(model)[-8:])}.")


def resolve_cuts(model, spec: BackboneSpec, cuts) -> list[tuple[str, str]]:
    """Aliases or exact layer names → [(alias, layer name)], shallow → deep; [] = all cuts."""
    if isinstance(cuts, str):
        cuts = [cuts]
    order = {n: i for i, n in enumerate(layer_names(model))}
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
                f"{did_you_mean(c, spec.cuts)}{hint}")
        if layer not in order:
            raise BackboneError(f"Cut point {alias!r} of {spec.name!r} is layer {layer!r}, which "
                                f"this model does not have.{did_you_mean(layer, order, 3)}")
        pairs.setdefault(layer, alias)
    return sorted(((a, n) for n, a in pairs.items()), key=lambda p: order[p[1]])


def block_layers(model, spec: BackboneSpec) -> list[list[str]]:
    """Layer names per fine-tuning block: block j = after block j-1's end up to its own end."""
    require_layers(model, spec.blocks, f"Blocks of {spec.name!r}")
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
                            f"{did_you_mean(pooling, POOLINGS)}")


def cut_model(model, layer_names, pooling: str = "avg"):
    """One model, one forward pass, one pooled output per cut layer (in the order given).

    Built from `model`'s own input (keras#16123). A single cut gives a model whose call returns a
    tensor rather than a 1-element list (Keras unwraps it).
    """
    _check_pooling(pooling)
    names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
    if not names or len(set(names)) != len(names):
        raise BackboneError(f"cut_model needs distinct layer names. Got {names!r}.")
    require_layers(model, names, f"Cutting {model.name!r}")
    outputs = [_pool(model.get_layer(n).output, n, pooling) for n in names]
    return keras.Model(model.input, outputs, name=f"{model.name}_cut")


def cut_widths(model, layer_names, pooling: str = "avg") -> list[int]:
    """Feature count per cut from the symbolic output shapes (never hard-coded)."""
    _check_pooling(pooling)
    names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
    require_layers(model, names, f"Cutting {model.name!r}")
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


def describe_registry(input_size_small: bool = True) -> str:
    """The registry as a text table, widths from a dry run (random weights, avg pooling).

    Small inputs keep it fast (own CNNs at 32 px, applications at their minimum size); widths with
    avg pooling are the channel counts, which do not depend on the input size.
    """
    lines = [f"{'backbone':<16}{'family':<14}{'size native/min':<17}{'channels':<10}preprocess "
             "→ input range", "  cut alias → Keras layer → width (avg pooling)"]
    for spec in (s for _, s in REGISTRY.items()):
        lo, hi = spec.input_range
        native = spec.native_size or "data"
        lines.append("")
        lines.append(f"{spec.name:<16}{spec.family:<14}{f'{native}/{spec.min_size}':<17}"
                     f"{spec.channels or 'any':<10}{describe_preprocess(spec)} "
                     f"→ [{lo:g}, {hi:g}]")
        if spec.kind == "pixels":
            (alias, layer), = spec.cuts.items()
            lines.append(f"  {alias:<10} → {layer:<22} → h × w × c (longest side at most "
                         "extract.pixels_size, area-resized)")
            continue
        size = 32 if spec.own else (spec.min_size if input_size_small else spec.native_size)
        model = spec.builder((size, size, spec.channels or 3), None)
        pairs = resolve_cuts(model, spec, [])
        widths = cut_widths(model, [n for _, n in pairs], "avg")
        for (alias, layer), width in zip(pairs, widths):
            lines.append(f"  {alias:<10} → {layer:<22} → {width}")
        del model
    lines.append("")
    lines.append("Weights: none | imagenet | path/to/*.weights.h5 | path/to/model.keras or .h5 "
                 "(+ layer) | a cutpoint-trained folder. Own CNNs: weights = 'self' trains them.")
    return "\n".join(lines)
