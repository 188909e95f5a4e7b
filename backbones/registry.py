"""The backbone registry: name → `BackboneSpec`, on the project's one `Registry` vocabulary.

A spec says how to build the network without its classification top, its input-size rules, its
preprocessing (the callable, its mode and the range it produces), its cut points (stable short
aliases → exact Keras layer names, shallow → deep) and its blocks (the layer ending each
fine-tuning block, shallow → deep). Cut points and blocks are declared separately: one answers
"where are features read", the other "how much of the network does depth k unfreeze"; they are
the same layers for every entry today, not by definition. Widths are never written down:
`backbones.cut.cut_widths` reads them off the built graph.

"pixels" is an entry too (kind "pixels"): the raw-pixel baseline, no network, one cut at the input.

Importing this module does not import TensorFlow: builders and preprocessing import it when called.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from backbones import own, pixels
from cutpoint.registry import Registry

PREPROCESS_MODES = ("caffe", "torch", "tf", "raw255", "unit")

# The range each preprocessing maps [0, 255] to (what the model INPUT sees).
RANGES = {
    "caffe": (-123.68, 255.0 - 103.939),                 # BGR, ImageNet means subtracted
    "torch": ((0 - 0.485) / 0.229, (1 - 0.406) / 0.225),  # x/255, ImageNet mean/std per channel
    "tf": (-1.0, 1.0),                                    # x/127.5 - 1
    "raw255": (0.0, 255.0),
    "unit": (0.0, 1.0),
}


class BackboneError(ValueError):
    """Bad backbone name, weights source, input shape or cut point (user input)."""


@dataclass(frozen=True)
class Preprocess:
    """float [0, 255] → what a network expects, in one of PREPROCESS_MODES.

    module: the keras.applications module whose own `preprocess_input` to use (a family in its
    native mode). in_model: the scaling is a layer of the network (own CNNs), so identity here.
    Always returns a new float32 tensor: Keras' preprocess_input modifies numpy arrays in place.
    """
    mode: str
    module: str | None = None
    in_model: bool = False

    def __call__(self, x):
        import keras
        import tensorflow as tf

        x = tf.cast(x, tf.float32)
        if self.module is not None:
            return getattr(keras.applications, self.module).preprocess_input(x)
        if self.mode in ("caffe", "torch", "tf"):
            return keras.applications.imagenet_utils.preprocess_input(x, mode=self.mode)
        if self.mode == "unit" and not self.in_model:
            return x / 255.0
        return x  # raw255, or "unit" done by the network's own Rescaling layer

    def describe(self) -> str:
        if self.in_model:
            return "unit (x/255 in the model: feed [0, 255])"
        return {"caffe": "caffe (RGB→BGR, minus ImageNet means)", "torch": "torch (x/255, "
                "ImageNet mean/std)", "tf": "tf (x/127.5 - 1)", "raw255": "raw255 ([0, 255], "
                "scaled in-graph)", "unit": "unit (x/255)"}.get(self.mode, self.mode)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str
    builder: Callable | None   # (input_shape, weights) -> keras.Model without top; None: no network
    native_size: int           # 0 = the data's own size (own CNNs)
    min_size: int
    channels: int | None       # None = any (own CNNs take the data's channels)
    preprocess: str            # the mode: caffe | torch | tf | raw255 | unit
    input_range: tuple         # range of the model input after preprocess_fn
    preprocess_fn: Callable    # float [0, 255] → model input (see `Preprocess`)
    cuts: dict                 # alias -> layer name, shallow -> deep
    blocks: tuple              # layer ending each fine-tuning block, shallow -> deep
    own: bool = False          # the project's own CNN, trainable by `backbones.train`
    kind: str = "network"      # "network": a Keras model cut at layers; "pixels": the images

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    def frozen_blocks(self, *, layer: str | None = None, depth=None) -> int | None:
        """Yosinski's n, the blocks kept as the backbone was trained (results' `frozen_blocks`):
        features cut at the end of block i → i (None when `layer` ends no block); the raw pixels
        → 0; fine-tuning at depth k (its top k blocks unfrozen) → n_blocks - k; scratch → 0."""
        if depth is not None:
            return 0 if depth == "scratch" else self.n_blocks - int(depth)
        if self.kind == "pixels":
            return 0
        return self.blocks.index(layer) + 1 if layer in self.blocks else None


def with_preprocess(spec: BackboneSpec, mode: str) -> BackboneSpec:
    """`spec` fed in another preprocessing mode (a saved model trained on other inputs)."""
    if mode == spec.preprocess:
        return spec
    return replace(spec, preprocess=mode, input_range=RANGES[mode], preprocess_fn=Preprocess(mode))


REGISTRY: Registry[BackboneSpec] = Registry(
    "backbone", BackboneError,
    hint="A saved Keras model can be used under any other name with weights = "
         "path/to/model.keras and the layer(s) to cut.")
register, get, available = REGISTRY.register, REGISTRY.get, REGISTRY.available


def describe_preprocess(spec: BackboneSpec) -> str:
    """The spec's preprocessing in words (provenance, the --list table)."""
    return pixels.DESCRIPTION if spec.kind == "pixels" else spec.preprocess_fn.describe()


def is_pixels(name) -> bool:
    """Whether `name` (a backbone name, e.g. a store's provenance "backbone") is the raw-pixel
    baseline."""
    return name in REGISTRY and get(name).kind == "pixels"


# ---------------------------------------------------------------------------------- the entries

def _keras_app(fn_name: str) -> Callable:
    def build(input_shape, weights=None):
        import keras
        fn = getattr(keras.applications, fn_name)
        shape = tuple(int(d) for d in input_shape)
        return fn(include_top=False, weights=weights, input_shape=shape)
    build.__name__ = f"build_{fn_name}"
    return build


def _own_builder(name: str) -> Callable:
    def build(input_shape, weights=None):
        if weights not in (None, "none"):
            raise BackboneError(
                f"{name} is one of cutpoint's own CNNs and has no {weights!r} weights. Train it "
                "(backbone.weights = 'self') or pass a cutpoint-trained folder or weights file.")
        return own.build_trunk(name, input_shape)
    build.__name__ = f"build_{name}"
    return build


def _app(name, family, fn_name, module, native, minimum, preprocess, cuts, blocks):
    """A Keras application. `module`: the keras.applications module of its preprocess_input."""
    return BackboneSpec(name=name, family=family, builder=_keras_app(fn_name), native_size=native,
                        min_size=minimum, channels=3, preprocess=preprocess,
                        input_range=RANGES[preprocess],
                        preprocess_fn=Preprocess(preprocess, module=module),
                        cuts=dict(cuts), blocks=tuple(blocks))


def _own(name):
    ends = own.OWN_MODELS[name][1]
    cuts = {f"block{i}": layer for i, layer in enumerate(ends, start=1)}
    cuts["fc"] = "fc"
    # "unit" = x/255, done by the model's own Rescaling layer: it consumes [0, 255].
    return BackboneSpec(name=name, family="own", builder=_own_builder(name), native_size=0,
                        min_size=own.MIN_SIZE, channels=None, preprocess="unit",
                        input_range=(0.0, 255.0), preprocess_fn=Preprocess("unit", in_model=True),
                        cuts=cuts, blocks=(*ends, "fc"), own=True)


_VGG_POOLS = [f"block{i}_pool" for i in range(1, 6)]
_RESNET50_STAGES = ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"]
_MOBILENET_V2 = ["block_2_add", "block_5_add", "block_12_add", "block_16_project_BN", "out_relu"]
_EFFICIENTNET_B0 = ["block2b_add", "block3b_add", "block5c_add", "block7a_project_bn",
                    "top_activation"]
_INCEPTION_V3 = ["mixed2", "mixed5", "mixed7", "mixed9", "mixed10"]
# DenseNet is pre-activation: tap the BN+ReLU that opens each transition (as timm does).
_DENSENET121 = ["pool2_relu", "pool3_relu", "pool4_relu", "relu"]

for _spec in [
    *(_own(n) for n in own.OWN_MODELS),
    _app("vgg16", "vgg", "VGG16", "vgg16", 224, 32, "caffe",
         {f"block{i}": layer for i, layer in enumerate(_VGG_POOLS, start=1)}, _VGG_POOLS),
    _app("vgg19", "vgg", "VGG19", "vgg16", 224, 32, "caffe",
         {f"block{i}": layer for i, layer in enumerate(_VGG_POOLS, start=1)}, _VGG_POOLS),
    _app("resnet50", "resnet", "ResNet50", "resnet50", 224, 32, "caffe",
         dict(zip(("conv2", "conv3", "conv4", "conv5"), _RESNET50_STAGES)), _RESNET50_STAGES),
    _app("mobilenet_v2", "mobilenet_v2", "MobileNetV2", "mobilenet_v2", 224, 32, "tf",
         dict(zip(("block2", "block5", "block12", "block16", "top"), _MOBILENET_V2)),
         _MOBILENET_V2),
    # EfficientNet rescales and normalises inside the graph: it wants [0, 255] (tensorflow#48412).
    _app("efficientnet_b0", "efficientnet", "EfficientNetB0", "efficientnet", 224, 32, "raw255",
         dict(zip(("block2", "block3", "block5", "block7", "top"), _EFFICIENTNET_B0)),
         _EFFICIENTNET_B0),
    _app("inception_v3", "inception", "InceptionV3", "inception_v3", 299, 75, "tf",
         {m: m for m in _INCEPTION_V3}, _INCEPTION_V3),
    _app("densenet121", "densenet", "DenseNet121", "densenet", 224, 32, "torch",
         dict(zip(("block1", "block2", "block3", "block4"), _DENSENET121)), _DENSENET121),
    # The raw-pixel baseline: the images themselves (see backbones.pixels), no blocks to tune.
    BackboneSpec(name=pixels.PIXELS, family="pixels", builder=None, native_size=0, min_size=1,
                 channels=None, preprocess="unit", input_range=RANGES["unit"],
                 preprocess_fn=pixels.scale, cuts={pixels.PIXELS: pixels.LAYER}, blocks=(),
                 kind="pixels"),
]:
    register(_spec.name, _spec)
del _spec
