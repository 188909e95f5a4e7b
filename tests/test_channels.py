"""dataset.channels (auto | 1 | 3) converts images to what the backbone needs, recorded."""
import numpy as np
import pytest
from PIL import Image

from cutpoint import config
from cutpoint import datasets as cds
from embeddings import store


def _rgb_npz(path, n=24, size=16):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    y = np.arange(n) % 2
    np.savez(path, x_train=x[:16], y_train=y[:16], x_test=x[16:], y_test=y[16:])
    return x, y


def _cfg(npz, *sets):
    return config.load(None, ["dataset.name=npz", f"dataset.path={npz}",
                              "dataset.source_classes=[]", "dataset.target_classes=[]",
                              "extract.pixels=false", *sets])


def test_luminance_matches_pillow_and_repeat():
    x = np.random.default_rng(0).integers(0, 255, (3, 5, 4, 3), dtype=np.uint8)
    gray = cds.convert_channels(x, 1)
    want = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in x])[..., None]
    assert np.array_equal(gray, want)
    assert np.array_equal(cds.convert_channels(gray, 3), np.repeat(gray, 3, axis=-1))


def test_setting_is_validated():
    assert config.load(None, ["dataset.channels=1"])["dataset"]["channels"] == 1
    with pytest.raises(config.ConfigError, match="'dataset.channels' setting must be one of"):
        config.load(None, ["dataset.channels=2"])


def test_rgb_data_into_a_gray_backbone_needs_the_setting_and_then_works(tmp_path):
    from backbones.weights import load_backbone
    from extract.extractor import extract
    x, y = _rgb_npz(tmp_path / "rgb.npz")
    gray_model, _, _ = load_backbone("small_vgg", "none", input_shape=(16, 16, 1))
    gray_model.save(str(tmp_path / "gray.keras"))
    sets = ["backbone.name=small_vgg", f"backbone.weights={tmp_path / 'gray.keras'}"]
    with pytest.raises(ValueError, match="dataset.channels = 1"):
        extract(_cfg(tmp_path / "rgb.npz", *sets), tmp_path / "refused")
    extract(_cfg(tmp_path / "rgb.npz", *sets, "dataset.channels=1"), tmp_path / "conv")
    prov = store.provenance(tmp_path / "conv" / "embeddings.h5")
    assert prov["input_size"] == [16, 16, 1]
    assert prov["dataset_channels"]["setting"] == 1
    assert prov["dataset_channels"]["converted"]["method"].startswith("luminance")
    # Identical to extracting images converted to gray beforehand.
    g = cds.convert_channels(x, 1)[..., 0]
    np.savez(tmp_path / "gray.npz", x_train=g[:16], y_train=y[:16], x_test=g[16:], y_test=y[16:])
    extract(_cfg(tmp_path / "gray.npz", *sets), tmp_path / "pre")
    a, b = tmp_path / "conv" / "embeddings.h5", tmp_path / "pre" / "embeddings.h5"
    for cut in store.cuts(a):
        np.testing.assert_allclose(store.read(a, cut)[0], store.read(b, cut)[0], atol=1e-6)


def test_gray_data_repeated_to_three_channels_for_an_own_cnn(tmp_path):
    from conftest import write_toy_npz
    from extract.extractor import extract
    npz = write_toy_npz(tmp_path / "toy.npz", n_train=16, n_test=8)
    extract(_cfg(npz, "backbone.name=plain_cnn", "backbone.weights=none",
                 "dataset.channels=3"), tmp_path / "run")
    prov = store.provenance(tmp_path / "run" / "embeddings.h5")
    assert prov["input_size"][2] == 3
    assert prov["dataset_channels"]["converted"] == {"from": 1, "to": 3, "method": "repeated gray"}
