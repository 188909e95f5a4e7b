"""Self-training an own CNN: beats chance on separable data, writes its folder, reuses it, loads."""
import json
import logging

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from backbones.cut import cut_model, cut_widths, resolve_cuts  # noqa: E402
from backbones.train import train_backbone  # noqa: E402
from backbones.weights import load_backbone  # noqa: E402

CFG = {"epochs": 3, "batch_size": 32, "learning_rate": 0.003, "patience": 2,
       "augment": ["shift", "flip", "zoom"]}
CLASSES = ["horizontal", "vertical", "blank"]


def stripes(n, seed, size=16):
    """3 classes separable by texture (flip/shift-proof): horizontal, vertical stripes, blank."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.uniform(0, 60, (n, size, size, 1))
    rows = (np.arange(size) // 2 % 2 == 0)
    x[y == 0, :, :, 0] += 180 * rows[None, :, None]
    x[y == 1, :, :, 0] += 180 * rows[None, None, :]
    return np.clip(x, 0, 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def data():
    return stripes(240, 0), stripes(60, 1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("run") / "backbone"
    path = train_backbone("plain_cnn", train=data[0], val=data[1], cfg_train=CFG, out_dir=out,
                          seed=0, num_classes=3, class_names=CLASSES)
    return path


def test_training_beats_chance_and_writes_its_folder(trained, data):
    assert {p.name for p in trained.iterdir()} == {"model.keras", "history.json", "config.json"}
    cfg = json.loads((trained / "config.json").read_text())
    assert cfg["backbone"] == "plain_cnn" and cfg["class_names"] == CLASSES
    assert cfg["train"] == CFG and cfg["seed"] == 0 and cfg["num_classes"] == 3
    assert cfg["val_accuracy"] > 0.7  # chance is 1/3
    assert cfg["key"] and cfg["data_hash"] and cfg["code_version"]
    hist = json.loads((trained / "history.json").read_text())
    assert len(hist["loss"]) == cfg["epochs_run"] >= 1 and "val_accuracy" in hist
    # the saved classifier reproduces the recorded validation accuracy; no augmentation inside
    model = keras.models.load_model(trained / "model.keras", compile=False)
    pred = np.asarray(model(data[1][0].astype("float32"), training=False)).argmax(axis=1)
    assert (pred == data[1][1]).mean() == pytest.approx(cfg["val_accuracy"], abs=1e-6)
    assert not any("Random" in type(layer).__name__ for layer in model.layers)
    assert not list(trained.parent.glob(".backbone.*"))  # no temp folder left behind


def test_second_call_reuses_without_retraining(trained, data, caplog):
    before = (trained / "model.keras").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="cutpoint.train"):
        again = train_backbone("plain_cnn", train=data[0], val=data[1], cfg_train=dict(CFG),
                               out_dir=trained, seed=0, num_classes=3, class_names=CLASSES)
    assert again == trained
    assert (trained / "model.keras").stat().st_mtime_ns == before
    assert any("reusing" in r.getMessage() for r in caplog.records)
    assert not any("training plain_cnn" in r.getMessage() for r in caplog.records)


def test_trained_folder_loads_as_backbone(trained, data):
    model, spec, prov = load_backbone("plain_cnn", str(trained), input_shape=(16, 16, 1))
    assert spec.name == "plain_cnn" and model.layers[-1].name == "fc"
    cfg = json.loads((trained / "config.json").read_text())
    assert prov["weights_kind"] == "trained" and prov["trained"]["key"] == cfg["key"]
    clf = keras.models.load_model(trained / "model.keras", compile=False)
    fc = keras.Model(clf.input, clf.get_layer("fc").output)
    x = data[1][0][:8].astype("float32")
    cut = cut_model(model, [n for _, n in resolve_cuts(model, spec, ["fc", "block3"])])
    block3, emb = [np.asarray(o) for o in cut(x)]
    np.testing.assert_allclose(emb, np.asarray(fc(x)), rtol=1e-5, atol=1e-5)
    assert block3.shape == (8, cut_widths(model, ["block3_pool"])[0])
    with pytest.raises(ValueError, match="holds a trained 'plain_cnn'"):
        load_backbone("small_vgg", str(trained), input_shape=(16, 16, 1))


def test_different_inputs_retrain_into_the_same_folder(tmp_path, data):
    out = tmp_path / "bb"
    cfg = dict(CFG, epochs=1, augment=[])
    train_backbone("plain_cnn", data[0], data[1], cfg, out, seed=0, num_classes=3,
                   class_names=CLASSES)
    key0 = json.loads((out / "config.json").read_text())["key"]
    train_backbone("plain_cnn", data[0], data[1], cfg, out, seed=1, num_classes=3,
                   class_names=CLASSES)
    cfg1 = json.loads((out / "config.json").read_text())
    assert cfg1["key"] != key0 and cfg1["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bb"]  # swapped in, old one removed


def test_bad_training_inputs_are_refused(tmp_path, data):
    (x, y), val = data
    with pytest.raises(ValueError, match="own CNNs"):
        train_backbone("resnet50", (x, y), val, CFG, tmp_path, 0, 3, CLASSES)
    with pytest.raises(ValueError, match="Unknown train setting"):
        train_backbone("plain_cnn", (x, y), val, dict(CFG, epoch=2), tmp_path, 0, 3, CLASSES)
    with pytest.raises(ValueError, match="subset of"):
        train_backbone("plain_cnn", (x, y), val, dict(CFG, augment=["rotate"]), tmp_path, 0, 3,
                       CLASSES)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        train_backbone("plain_cnn", (x, y), val, CFG, tmp_path, 0, 2, CLASSES[:2])
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        train_backbone("plain_cnn", (x / 255.0 - 0.5, y), val, CFG, tmp_path, 0, 3, CLASSES)
    (tmp_path / "keep.txt").write_text("a run folder, not a backbone")
    with pytest.raises(ValueError, match="refusing to replace"):
        train_backbone("plain_cnn", (x, y), val, CFG, tmp_path, 0, 3, CLASSES)
    assert (tmp_path / "keep.txt").exists() and not list(tmp_path.parent.glob(".*tmp-*"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["small_vgg", "small_resnet"])
def test_batchnorm_cnns_train_above_chance(tmp_path, name):
    train, val = stripes(600, 2), stripes(90, 3)
    out = train_backbone(name, train, val, dict(CFG, epochs=4, augment=["shift"]),
                         tmp_path / name, seed=0, num_classes=3, class_names=CLASSES)
    assert json.loads((out / "config.json").read_text())["val_accuracy"] > 0.8


def test_training_is_bit_identical_on_rerun(tmp_path, data, trained):
    """Op determinism + seeded builds and pipelines: a second training from scratch into
    another folder gives exactly the same weights and history."""
    again = train_backbone("plain_cnn", train=data[0], val=data[1], cfg_train=CFG,
                           out_dir=tmp_path / "again", seed=0, num_classes=3, class_names=CLASSES)
    a = keras.models.load_model(trained / "model.keras", compile=False)
    b = keras.models.load_model(again / "model.keras", compile=False)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    assert json.loads((trained / "history.json").read_text()) == json.loads(
        (again / "history.json").read_text())
