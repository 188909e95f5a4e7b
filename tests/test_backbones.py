"""backbones: the registry, weights sources, cut points and input preparation (tiny inputs, random
weights, offline)."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
import tensorflow as tf  # noqa: E402

from cutpoint.provenance import hash_file  # noqa: E402
from backbones import registry  # noqa: E402
from backbones.cut import (block_layers, cut_model, cut_widths, describe_registry,  # noqa: E402
                           resolve_cuts)
from backbones.inputs import (check_input_size, input_decision, input_shape_for,  # noqa: E402
                              prepare_inputs)
from backbones.own import build_classifier  # noqa: E402
from backbones.weights import load_backbone  # noqa: E402

NAMES = registry.available(lambda s: s.kind == "network")


def small_shape(spec):
    """The smallest cheap valid input: 16 px gray for own CNNs, the minimum size for apps."""
    return (16, 16, 1) if spec.own else (spec.min_size, spec.min_size, 3)


def rand_images(shape, n=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *shape)).astype("float32")


def as_list(out):
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


# ------------------------------------------------------------------------ registry, cut widths

@pytest.mark.parametrize("name", NAMES)
def test_every_entry_builds_and_cut_widths_match_a_forward_pass(name):
    spec = registry.get(name)
    model, spec2, prov = load_backbone(name, "none", input_shape=small_shape(spec))
    assert spec2 is spec and prov["weights_sha256"] == "random"
    assert prov["input_shape"] == list(small_shape(spec))
    pairs = resolve_cuts(model, spec, [])
    assert [a for a, _ in pairs] == list(spec.cuts)  # registry order is shallow → deep
    layers = [n for _, n in pairs]
    for pooling in (["avg", "avgmax"] if not spec.own else ["avg", "max", "avgmax", "flatten"]):
        cut = cut_model(model, layers, pooling)
        outs = as_list(cut(spec.preprocess_fn(rand_images(small_shape(spec))), training=False))
        widths = cut_widths(model, layers, pooling)
        assert [o.shape for o in outs] == [(2, w) for w in widths]
        assert all(np.isfinite(o).all() for o in outs)
    # the block partition covers every layer once, in order, ending at the block ends
    groups = block_layers(model, spec)
    assert len(groups) == len(spec.blocks)
    flat = [n for g in groups for n in g]
    assert flat == [layer.name for layer in model.layers
                    if not isinstance(layer, keras.layers.InputLayer)]
    assert [g[-1] for g in groups[:-1]] == list(spec.blocks[:-1])
    assert spec.blocks[-1] in groups[-1]


def test_cut_model_several_cuts_equal_separate_single_cut_models():
    spec = registry.get("small_resnet")
    model, _, _ = load_backbone("small_resnet", "none", input_shape=(16, 16, 3))
    layers = [n for _, n in resolve_cuts(model, spec, [])]
    x = rand_images((16, 16, 3), n=3)
    together = as_list(cut_model(model, layers, "avgmax")(x, training=False))
    for layer, out in zip(layers, together):
        single = as_list(cut_model(model, [layer], "avgmax")(x, training=False))[0]
        np.testing.assert_allclose(out, single, rtol=1e-5, atol=1e-6)
    # pooling is its own layer: avg at a cut = the mean of the raw feature map
    raw = as_list(cut_model(model, ["block2_out"], "none")(x, training=False))[0]
    avg = as_list(cut_model(model, ["block2_out"], "avg")(x, training=False))[0]
    np.testing.assert_allclose(avg, raw.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    assert cut_widths(model, ["block2_out"], "none") == [int(np.prod(raw.shape[1:]))]


def test_flatten_warns_above_50k_features():
    model, _, _ = load_backbone("plain_cnn", "none", input_shape=(96, 96, 3))
    with pytest.warns(UserWarning, match="features per image"):
        cut_model(model, ["block1_pool"], "flatten")  # 48 × 48 × 32 = 73 728


def test_resolve_cuts_accepts_aliases_and_layer_names_sorted_and_deduplicated():
    spec = registry.get("small_vgg")
    model, _, _ = load_backbone("small_vgg", "none", input_shape=(16, 16, 1))
    got = resolve_cuts(model, spec, ["fc", "block2_pool", "block1_conv2", "block2"])
    assert got == [("block1_conv2", "block1_conv2"), ("block2", "block2_pool"), ("fc", "fc")]


# ------------------------------------------------------------------------------ preprocessing

@pytest.mark.parametrize("name", NAMES)
def test_preprocessing_maps_0_255_onto_the_declared_input_range(name):
    spec = registry.get(name)
    c = spec.channels or 3
    x = np.stack([np.zeros((4, 4, c)), np.full((4, 4, c), 255.0)]).astype("float32")
    before = x.copy()
    y = np.asarray(spec.preprocess_fn(x))
    np.testing.assert_array_equal(x, before)  # Keras' preprocess_input works in place on numpy
    lo, hi = spec.input_range
    assert y.min() == pytest.approx(lo, abs=1e-3) and y.max() == pytest.approx(hi, abs=1e-3)


def test_family_preprocessing():
    px = np.array([[[[255.0, 0.0, 10.0]]]], "float32")  # one RGB pixel
    caffe = np.asarray(registry.get("resnet50").preprocess_fn(px)).ravel()
    np.testing.assert_allclose(caffe, [10 - 103.939, 0 - 116.779, 255 - 123.68], rtol=1e-5)  # BGR
    tf_mode = np.asarray(registry.get("mobilenet_v2").preprocess_fn(px)).ravel()
    np.testing.assert_allclose(tf_mode, [1.0, -1.0, 10 / 127.5 - 1], rtol=1e-5)
    torch = np.asarray(registry.get("densenet121").preprocess_fn(px)).ravel()
    want = [(1 - .485) / .229, (0 - .456) / .224, (10 / 255 - .406) / .225]
    np.testing.assert_allclose(torch, want, rtol=1e-4)
    eff = np.asarray(registry.get("efficientnet_b0").preprocess_fn(px))
    np.testing.assert_array_equal(eff, px)  # rescaling lives in EfficientNet's graph
    own = registry.get("small_vgg")
    np.testing.assert_array_equal(np.asarray(own.preprocess_fn(px)), px)
    model, _, prov = load_backbone("small_vgg", "none", input_shape=(8, 8, 1))
    rescale = model.get_layer("rescale")
    assert isinstance(rescale, keras.layers.Rescaling) and rescale.scale == pytest.approx(1 / 255)
    assert prov["preprocess"] == "unit" and "in the model" in prov["preprocess_detail"]
    gray = np.full((1, 2, 2, 1), 255.0, "float32")  # gray into an RGB backbone is repeated
    assert np.asarray(prepare_inputs(gray, registry.get("vgg16"), (2, 2, 3))).shape == (1, 2, 2, 3)


def test_prepare_inputs_repeats_gray_resizes_clips_then_preprocesses():
    """The one input preparation (extraction, self-training and fine-tuning): cast, gray → RGB,
    tf.image.resize with the configured method clipped to [0, 255], augmentation, preprocessing."""
    x = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1)).astype(np.uint8)
    spec = registry.get("vgg16")
    for method in ("bilinear", "bicubic"):
        got = np.asarray(prepare_inputs(x, spec, (12, 12, 3), method))
        rgb = np.repeat(x.astype("float32"), 3, axis=-1)
        want = spec.preprocess_fn(tf.clip_by_value(tf.image.resize(rgb, (12, 12), method=method),
                                                   0.0, 255.0))
        np.testing.assert_array_equal(got, np.asarray(want))
    same = np.asarray(prepare_inputs(x, registry.get("small_vgg"), (8, 8, 1)))
    np.testing.assert_array_equal(same, x.astype("float32"))   # own CNNs: scaled in the model
    flip = [keras.layers.RandomFlip("horizontal", seed=1)]
    assert np.asarray(prepare_inputs(x, registry.get("small_vgg"), (8, 8, 1),
                                     augment=flip)).shape == x.shape


# ------------------------------------------------------------------- blocks and frozen blocks

def test_blocks_are_declared_apart_from_cuts_and_frozen_blocks_is_one_rule():
    for name in NAMES:
        spec = registry.get(name)
        assert spec.blocks and spec.n_blocks == len(spec.blocks)
        assert spec.frozen_blocks(depth=0) == spec.n_blocks
        assert spec.frozen_blocks(depth=spec.n_blocks) == 0
        assert spec.frozen_blocks(depth="scratch") == 0
    vgg = registry.get("small_vgg")
    assert vgg.blocks == ("block1_pool", "block2_pool", "block3_pool", "fc")
    assert [vgg.frozen_blocks(layer=layer) for layer in vgg.cuts.values()] == [1, 2, 3, 4]
    assert vgg.frozen_blocks(layer="block1_conv2") is None   # a cut inside a block
    assert vgg.frozen_blocks(depth=1) == 3


def test_registry_is_the_shared_vocabulary_and_stays_cheap_to_import():
    import subprocess
    import sys
    assert registry.available(lambda s: s.own) == ["plain_cnn", "small_vgg", "small_resnet"]
    assert registry.available()[-1] == "pixels" and "pixels" not in NAMES
    code = ("import sys, backbones.registry, backbones.inputs, backbones.train; "
            "print('tensorflow' in sys.modules or 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(__import__("conftest").ROOT), check=True)
    assert out.stdout.strip() == "False"


# -------------------------------------------------------------------------- input size rules

def test_input_shape_for_records_resize_and_channel_decisions():
    resnet, own = registry.get("resnet50"), registry.get("small_vgg")
    assert input_shape_for(resnet, (28, 28, 1)) == (224, 224, 3)
    assert input_shape_for(resnet, (28, 28), requested_size=32) == (32, 32, 3)
    d = input_decision(resnet, (28, 28, 1), 64)
    assert d["resized"] and d["channels_repeated"] and d["size_from"] == "backbone.input_size"
    assert input_shape_for(own, (28, 28, 1)) == (28, 28, 1)
    assert not input_decision(own, (28, 28, 3))["resized"]
    with pytest.raises(ValueError, match="at least 75"):
        input_shape_for(registry.get("inception_v3"), (32, 32, 3), requested_size=32)
    with pytest.raises(ValueError, match="at least 8"):
        check_input_size(own, 4)


# ------------------------------------------------------------------------------------ errors

def test_unknown_backbone_and_cut_errors_suggest_close_matches():
    with pytest.raises(ValueError, match=r"Unknown backbone 'resnet5'.*Did you mean 'resnet50'"):
        registry.get("resnet5")
    spec = registry.get("small_vgg")
    model, _, _ = load_backbone("small_vgg", "none", input_shape=(16, 16, 1))
    with pytest.raises(ValueError) as e:
        resolve_cuts(model, spec, ["blok2"])
    msg = str(e.value)
    assert "block1, block2, block3, fc" in msg and "'block2'" in msg and "'block2_pool'" in msg
    with pytest.raises(ValueError, match="pooling must be one of"):
        cut_model(model, ["fc"], "mean")


def test_weights_argument_errors():
    with pytest.raises(ValueError, match="Did you mean 'imagenet'"):
        load_backbone("resnet50", "imagnet", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="3-channel.*ImageNet weights are RGB.*repeats"):
        load_backbone("resnet50", "imagenet", input_shape=(64, 64, 1))  # refused before download
    with pytest.raises(ValueError, match="no ImageNet weights"):
        load_backbone("small_vgg", "imagenet", input_shape=(16, 16, 1))
    with pytest.raises(ValueError, match="input_shape"):
        load_backbone("small_vgg", "none")  # own CNNs are built for the data's size


# --------------------------------------------------------------------------- weights sources

def test_weights_file_round_trip_gives_identical_embeddings(tmp_path):
    spec = registry.get("small_vgg")
    model, _, _ = load_backbone("small_vgg", "none", input_shape=(16, 16, 1))
    for v in model.weights:  # make the BN statistics non-trivial too
        v.assign(np.random.default_rng(len(v.path)).uniform(0.5, 1.5, v.shape).astype("float32"))
    path = tmp_path / "vgg.weights.h5"
    model.save_weights(str(path))
    loaded, _, prov = load_backbone("small_vgg", str(path), input_shape=(16, 16, 1))
    layers = list(spec.cuts.values())
    x = rand_images((16, 16, 1), n=4)
    a = as_list(cut_model(model, layers)(x, training=False))
    b = as_list(cut_model(loaded, layers)(x, training=False))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    fresh = as_list(cut_model(load_backbone("small_vgg", "none", (16, 16, 1))[0], layers)(x))
    assert not np.allclose(fresh[-1], a[-1])  # the file really carried weights
    assert prov["weights"] == str(path) and prov["weights_sha256"] == hash_file(path)
    assert prov["weights_kind"] == "weights_file" and prov["layers"] == spec.cuts


def test_classifier_weights_file_loads_into_its_backbone(tmp_path):
    clf = build_classifier("small_resnet", (16, 16, 3), num_classes=3, seed=2)
    path = tmp_path / "clf.weights.h5"
    clf.save_weights(str(path))
    model, _, _ = load_backbone("small_resnet", str(path), input_shape=(16, 16, 3))
    x = rand_images((16, 16, 3), n=2)
    fc = keras.Model(clf.input, clf.get_layer("fc").output)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(fc(x)), rtol=1e-5, atol=1e-6)


def test_mismatched_weights_file_gives_a_clear_error(tmp_path):
    other, _, _ = load_backbone("plain_cnn", "none", input_shape=(16, 16, 1))
    path = tmp_path / "plain.weights.h5"
    other.save_weights(str(path))
    with pytest.raises(ValueError) as e:
        load_backbone("small_vgg", str(path), input_shape=(16, 16, 1))
    msg = str(e.value)
    assert "plain.weights.h5" in msg and "'small_vgg'" in msg and "expected" in msg.lower()
    assert len(msg) < 1500  # Keras' own message dumps whole tensors
    with pytest.raises(ValueError, match=r"plain\.weights\.h5.*plain_cnn.*shape"):
        load_backbone("plain_cnn", str(path), input_shape=(16, 16, 3))  # 1 vs 3 channels


def _custom_model():
    inp = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="inner")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(5, activation="relu", name="emb")(x)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="head")(x))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_saved_model_cut_at_named_inner_layers(tmp_path, suffix):
    model = _custom_model()
    path = tmp_path / f"custom{suffix}"
    model.save(str(path))
    loaded, spec, prov = load_backbone("mynet", str(path), layer=["emb", "inner"])
    assert spec.name == f"saved:custom{suffix}" and spec.preprocess == "raw255"
    assert prov["weights_kind"] == "saved_model" and prov["weights_sha256"] == hash_file(path)
    pairs = resolve_cuts(loaded, spec, [])
    assert pairs == [("inner", "inner"), ("emb", "emb")]
    x = rand_images((12, 12, 3), n=3)
    inner, emb = as_list(cut_model(loaded, ["inner", "emb"], "avg")(x))
    ref = keras.Model(model.input, [model.get_layer("inner").output, model.get_layer("emb").output])
    ref_inner, ref_emb = as_list(ref(x))
    np.testing.assert_allclose(inner, ref_inner.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb, ref_emb, rtol=1e-5, atol=1e-6)
    assert cut_widths(loaded, ["inner", "emb"], "avg") == [6, 5]
    unit = load_backbone("mynet", str(path), layer="emb", preprocess="unit")[1]
    np.testing.assert_allclose(np.asarray(unit.preprocess_fn(x)), x / 255.0, rtol=1e-6)
    with pytest.raises(ValueError, match="needs the layer"):
        load_backbone("mynet", str(path))
    with pytest.raises(ValueError, match="Did you mean 'inner'"):
        load_backbone("mynet", str(path), layer="iner")


def test_saved_own_classifier_under_its_registry_name_drops_the_head_and_resizes(tmp_path):
    clf = build_classifier("small_vgg", (16, 16, 1), num_classes=4, seed=1)
    path = tmp_path / "clf.keras"
    clf.save(str(path))
    model, spec, _ = load_backbone("small_vgg", str(path))
    assert model.output.shape[-1] == 128 and model.layers[-1].name == "fc"  # no head
    x = rand_images((16, 16, 1), n=2)
    fc = keras.Model(clf.input, clf.get_layer("fc").output)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(fc(x)), rtol=1e-5, atol=1e-6)
    bigger, _, prov = load_backbone("small_vgg", str(path), input_shape=(24, 24, 1))
    assert prov["input_shape"] == [24, 24, 1]
    for name in ("block1_conv1", "block3_bn2", "fc"):
        for u, v in zip(bigger.get_layer(name).get_weights(), clf.get_layer(name).get_weights()):
            np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="1-channel"):
        load_backbone("small_vgg", str(path), input_shape=(16, 16, 3))


def test_describe_registry_lists_every_backbone_and_cut():
    text = describe_registry()
    for name in NAMES:
        spec = registry.get(name)
        assert name in text
        for alias, layer in spec.cuts.items():
            assert layer in text
