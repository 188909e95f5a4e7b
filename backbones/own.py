"""The project's own small CNNs, in the styles the seed reports used.

Every model starts with a `Rescaling(1/255)` layer named "rescale", so it consumes raw [0, 255]
pixels and its preprocessing outside the graph is the identity (the "unit" scaling travels inside
the saved model and cannot be forgotten at extraction time). Layer names are explicit and stable:
they are the cut points ("block1_pool" … "fc") and the fine-tuning blocks, and they must not
depend on how many models were built earlier in the session (Keras' auto names do).

`build_trunk` returns the backbone (input → "fc", no classification head); `build_classifier` adds
the head used for self-training: Dropout "fc_drop" → Dense(num_classes, softmax) "predictions".
Convolutions use "same" padding, so any input of at least 8 px works (three 2× poolings).
Keras is imported when a model is built, so the registry can name these without loading it.
"""
from __future__ import annotations

FC_UNITS = 128
FILTERS = (32, 64, 128)
MIN_SIZE = 8
# PyTorch's BN momentum (Keras: 0.99): the moving statistics used at inference catch up within
# tens of steps, so short runs on small sets (tests, label budgets) are not judged with stale stats.
BN_MOMENTUM = 0.9


def _plain_cnn(x):
    """conv-ReLU + max-pool per block, no BatchNorm (the seeds' first "simple model")."""
    from keras import layers

    for b, f in enumerate(FILTERS, start=1):
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"block{b}_conv1")(x)
        x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    return x


def _small_vgg(x):
    """VGG-style blocks: 2 × (conv-BN-ReLU) + max-pool + dropout (the seeds' best CIFAR-10 CNN)."""
    from keras import layers

    for b, f in enumerate(FILTERS, start=1):
        for i in (1, 2):
            x = layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"block{b}_conv{i}")(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{b}_bn{i}")(x)
            x = layers.Activation("relu", name=f"block{b}_relu{i}")(x)
        x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
        x = layers.Dropout(0.25, name=f"block{b}_drop")(x)
    return x


def _small_resnet(x):
    """A 3-stage ResNet (one basic residual unit per stage, stride 2 from stage 2 on)."""
    from keras import layers

    x = layers.Conv2D(FILTERS[0], 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for b, (f, stride) in enumerate(zip(FILTERS, (1, 2, 2)), start=1):
        shortcut = x
        y = layers.Conv2D(f, 3, strides=stride, padding="same", use_bias=False,
                          name=f"block{b}_conv1")(x)
        y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{b}_bn1")(y)
        y = layers.Activation("relu", name=f"block{b}_relu1")(y)
        y = layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"block{b}_conv2")(y)
        y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{b}_bn2")(y)
        if stride != 1 or x.shape[-1] != f:  # projection shortcut where the shape changes
            shortcut = layers.Conv2D(f, 1, strides=stride, use_bias=False,
                                     name=f"block{b}_proj")(x)
            shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM,
                                                 name=f"block{b}_proj_bn")(shortcut)
        x = layers.Add(name=f"block{b}_add")([shortcut, y])
        x = layers.Activation("relu", name=f"block{b}_out")(x)
    return x


# name -> (body, layer name at the end of each block; aliases are block1, block2, block3, fc)
OWN_MODELS = {
    "plain_cnn": (_plain_cnn, ("block1_pool", "block2_pool", "block3_pool")),
    "small_vgg": (_small_vgg, ("block1_pool", "block2_pool", "block3_pool")),
    "small_resnet": (_small_resnet, ("block1_out", "block2_out", "block3_out")),
}


def _check(name: str, input_shape) -> tuple:
    if name not in OWN_MODELS:
        raise ValueError(f"Unknown own CNN {name!r}. Available: {', '.join(OWN_MODELS)}.")
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape[:2]) < MIN_SIZE or shape[2] < 1:
        raise ValueError(f"{name} needs an input shape (height, width, channels) with height and "
                         f"width of at least {MIN_SIZE} px. Got {tuple(input_shape)!r} instead.")
    return shape


def build_trunk(name: str, input_shape, seed: int | None = None):
    """The backbone: input → "fc" (Dense(128, ReLU) on global average pooling), no head."""
    import keras
    from keras import layers

    shape = _check(name, input_shape)
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    body, _ = OWN_MODELS[name]
    inputs = keras.Input(shape, name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = body(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(FC_UNITS, activation="relu", name="fc")(x)
    return keras.Model(inputs, x, name=name)


def build_classifier(name: str, input_shape, num_classes: int, seed: int | None = 0):
    """The trunk plus a softmax head: what `backbones.train` trains (its "fc" is the backbone's)."""
    import keras
    from keras import layers

    if int(num_classes) < 2:
        raise ValueError(f"A classifier needs at least 2 classes. Got num_classes={num_classes!r}.")
    trunk = build_trunk(name, input_shape, seed)
    x = layers.Dropout(0.5, name="fc_drop")(trunk.output)
    x = layers.Dense(int(num_classes), activation="softmax", name="predictions")(x)
    return keras.Model(trunk.input, x, name=name)
