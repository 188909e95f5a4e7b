"""Analytic FLOPs per image of a Keras model: 2 FLOPs per multiply-add of its conv/dense layers.

Counted: Conv2D 2*kh*kw*(c_in/groups)*c_out*H_out*W_out, DepthwiseConv2D
2*kh*kw*c_in*depth_multiplier*H_out*W_out, SeparableConv2D (depthwise + 1x1 pointwise), Dense
2*in*out per position. Not counted: bias adds, BatchNorm, activations, pooling, resize and
preprocessing (a few % at most for these networks), so the achieved GFLOP/s is a slight
underestimate. Why analytic and not TF's profiler: it depends on no TF-version-specific API and
it is exactly what the matmul peak compares with (the multiply-adds the kernels must do).
"""
from __future__ import annotations

import math

METHOD = ("analytic: 2 x multiply-adds of Conv2D / DepthwiseConv2D / SeparableConv2D / Dense "
          "layers on the path to the cut outputs (bias, BN, activations, pooling, resize and "
          "preprocessing not counted)")


def _shape(tensor_or_list):
    t = tensor_or_list[0] if isinstance(tensor_or_list, (list, tuple)) else tensor_or_list
    return tuple(t.shape)


def _io_shapes(layer):
    """(input shape, output shape) of a layer used once in a functional graph, else None."""
    try:
        return _shape(layer.input), _shape(layer.output)
    except (AttributeError, ValueError):  # shared layer (several nodes) or not built
        return None


def layer_flops(layer) -> int:
    """FLOPs per sample of one layer (0 for the layers not counted)."""
    from keras import layers as L

    if not isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D, L.Dense)):
        return 0
    shapes = _io_shapes(layer)
    if shapes is None:
        return 0
    (in_shape, out_shape) = shapes
    spatial = math.prod(int(d) for d in out_shape[1:-1]) if len(out_shape) > 2 else 1
    if isinstance(layer, L.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return 2 * kh * kw * int(in_shape[-1]) * int(layer.depth_multiplier) * spatial
    if isinstance(layer, L.SeparableConv2D):
        kh, kw = layer.kernel_size
        c_in = int(in_shape[-1])
        mid = c_in * int(layer.depth_multiplier)
        return 2 * kh * kw * mid * spatial + 2 * mid * int(out_shape[-1]) * spatial
    if isinstance(layer, L.Conv2D):
        kh, kw = layer.kernel_size
        groups = int(getattr(layer, "groups", 1) or 1)
        return 2 * kh * kw * (int(in_shape[-1]) // groups) * int(out_shape[-1]) * spatial
    if isinstance(layer, L.Dense):
        return 2 * int(in_shape[-1]) * int(out_shape[-1]) * spatial
    return 0


def count(model) -> dict:
    """{"total": FLOPs per image, "by_type": {class name: FLOPs}} over the model's layers.

    Nested models are walked. A Keras functional model only holds the layers between its inputs
    and outputs, so a cut model counts exactly what its forward pass computes.
    """
    by_type: dict = {}

    def walk(m):
        for layer in m.layers:
            if hasattr(layer, "layers") and layer.layers:
                walk(layer)
                continue
            f = layer_flops(layer)
            if f:
                name = type(layer).__name__
                by_type[name] = by_type.get(name, 0) + f

    walk(model)
    return {"total": int(sum(by_type.values())), "by_type": by_type}
