"""Whole saved classifiers whose backbone is a nested Model layer (the usual transfer-learning
form, keras#16123/#16355): inner and top-level layers are cut points, registry aliases work for a
registry family, at the saved input size or another, with the base's own preprocessing."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from backbones.cut import cut_model, resolve_cuts  # noqa: E402
from backbones.weights import load_backbone  # noqa: E402


def _head(base, kind, n=3):
    L = keras.layers
    if kind == "sequential":
        return keras.Sequential([keras.Input(base.input.shape[1:]), base,
                                 L.GlobalAveragePooling2D(name="gap"), L.Dropout(0.2),
                                 L.Dense(n, name="head")])
    inp = keras.Input(base.input.shape[1:])
    x = L.GlobalAveragePooling2D(name="gap")(base(inp))
    return keras.Model(inp, L.Dense(n, name="head")(L.Dropout(0.2)(x)))


def _mobilenet():
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(include_top=False, weights=None, alpha=0.35,
                                          input_shape=(32, 32, 3))


def _tiny_resnet():
    L = keras.layers
    keras.utils.set_random_seed(1)
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    y = L.Conv2D(8, 3, padding="same", name="res_conv")(x)
    y = L.BatchNormalization(name="res_bn")(y)
    x = L.Activation("relu", name="res_out")(L.Add(name="res_add")([x, y]))
    return keras.Model(inp, L.Conv2D(12, 3, strides=2, name="top_conv")(x), name="tiny_resnet")


def _x(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (2, *shape)).astype("float32")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One tiny MobileNetV2 base, saved inside two classifiers (built once for the module)."""
    tmp = tmp_path_factory.mktemp("nested")
    base = _mobilenet()
    paths = {}
    for kind, suffix in (("functional", ".keras"), ("sequential", ".h5")):
        paths[kind] = tmp / f"clf_{kind}{suffix}"
        _head(base, kind).save(str(paths[kind]))
    return base, paths


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_mobilenet_classifier_under_its_registry_name(saved, kind):
    base, paths = saved
    path = paths[kind]
    model, spec, prov = load_backbone("mobilenet_v2", str(path))
    assert tuple(model.input.shape[1:]) == (32, 32, 3) and spec.preprocess == "tf"
    assert prov["nested"]["family"] == "mobilenet_v2"
    pairs = resolve_cuts(model, spec, ["block5", "block_13_expand_relu"])
    assert pairs == [("block5", "block_5_add"), ("block_13_expand_relu", "block_13_expand_relu")]
    x = spec.preprocess_fn(_x((32, 32, 3)))
    got = cut_model(model, [n for _, n in pairs], "avg")(x)
    want = keras.Model(base.input, base.get_layer("block_13_expand_relu").output)(x)
    np.testing.assert_allclose(got[1], np.asarray(want).mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)
    if kind == "sequential":
        return                      # the rebuild at another size is the same for both forms
    bigger, spec2, _ = load_backbone("mobilenet_v2", str(path), input_shape=(48, 48, 3))
    assert tuple(bigger.input.shape[1:]) == (48, 48, 3)
    w = bigger.get_layer("block_5_add").output.shape
    assert tuple(w[1:]) == (6, 6, 16)
    np.testing.assert_allclose(bigger.get_layer("Conv1").get_weights()[0],
                               base.get_layer("Conv1").get_weights()[0])


def test_generic_name_cuts_inner_and_top_level_layers_with_the_bases_preprocessing(saved):
    base, paths = saved
    path = paths["functional"]
    model, spec, prov = load_backbone("my_classifier", str(path),
                                         layer=["gap", "block_13_expand_relu"])
    assert spec.preprocess == "tf" and prov["nested"]["top_layers"][0] == "gap"
    pairs = resolve_cuts(model, spec, ["gap", "block_13_expand_relu"])
    assert [n for _, n in pairs] == ["block_13_expand_relu", "gap"]
    x = spec.preprocess_fn(_x((32, 32, 3)))
    got = cut_model(model, ["block_13_expand_relu", "gap"], "avg")(x)
    np.testing.assert_allclose(got[1], np.asarray(base(x)).mean(axis=(1, 2)), rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_tiny_resnet_sequential_classifier_cut_at_inner_and_gap(tmp_path, suffix):
    base = _tiny_resnet()
    path = tmp_path / f"seq{suffix}"
    _head(base, "sequential").save(str(path))
    model, spec, prov = load_backbone("resnet_like", str(path), layer=["res_out", "gap"])
    assert prov["nested"]["family"] is None and spec.preprocess == "raw255"
    x = _x((16, 16, 3))
    inner, gap = cut_model(model, ["res_out", "gap"], "avg")(x)
    want = keras.Model(base.input, base.get_layer("res_out").output)(x)
    np.testing.assert_allclose(inner, np.asarray(want).mean(axis=(1, 2)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gap, np.asarray(base(x)).mean(axis=(1, 2)), rtol=1e-4, atol=1e-4)


def test_extract_a_saved_mobilenet_classifier_by_alias(tmp_path, saved):
    from conftest import write_toy_npz
    from cutpoint import config
    from embeddings import store
    from extract.extractor import extract
    path = saved[1]["sequential"]
    npz = write_toy_npz(tmp_path / "toy.npz", n_train=24, n_test=8, size=32)
    common = ["dataset.name=npz", f"dataset.path={npz}", "dataset.source_classes=[]",
              "dataset.target_classes=[]", "backbone.name=mobilenet_v2",
              f"backbone.weights={path}", "extract.cuts=[\"block5\", \"block12\"]",
              "extract.pixels=false"]
    out = extract(config.load(None, common), tmp_path / "run")
    prov = store.provenance(tmp_path / "run" / "embeddings.h5")
    assert out["rows"] == 32 and list(out["cuts"]) == ["block5", "block12"]
    assert prov["input_size"] == [32, 32, 3] and prov["preprocess"] == "tf"
    assert prov["channels"] == "repeated gray to RGB"
