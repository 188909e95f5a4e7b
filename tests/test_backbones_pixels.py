"""The raw-pixel baseline: a registry entry with no network, extracted through the same plan and
row writing as a backbone, at a bounded size (extract.pixels_size, area-resized, recorded)."""
import warnings

import numpy as np
import pytest
from PIL import Image

from backbones import registry
from backbones.pixels import PIXELS, pixels_shape
from cutpoint import config
from cutpoint.splits import prepare
from embeddings import store


def _extract_pixels(cfg, run_dir):
    from extract.plan import extract_store
    return extract_store(cfg, run_dir / "pixels.h5", "none", prepare(cfg), PIXELS)


def test_pixels_is_a_registry_entry_without_a_network():
    spec = registry.get(PIXELS)
    assert spec.kind == "pixels" and registry.is_pixels(PIXELS)
    assert not registry.is_pixels("small_vgg") and not registry.is_pixels("saved:x.keras")
    assert spec.cuts == {"pixels": "input"} and spec.blocks == ()
    assert spec.frozen_blocks(layer="input") == 0
    x = np.full((2, 3, 3, 1), 255, np.uint8)
    assert spec.preprocess_fn(x).shape == (2, 9) and spec.preprocess_fn(x).max() == 1.0
    from backbones.weights import load_backbone
    with pytest.raises(registry.BackboneError, match="raw-pixel baseline, not a network"):
        load_backbone(PIXELS, "none", input_shape=(8, 8, 1))


def test_pixel_store_is_capped_area_resized_and_recorded(tmp_path):
    from backbones.embed import embed_images
    assert pixels_shape((28, 28, 1), 64) == (28, 28)      # Fashion-MNIST keeps its size
    assert pixels_shape((300, 300, 3), 64) == (64, 64)
    assert pixels_shape((100, 80, 1), 64) == (64, 51)     # aspect kept
    assert pixels_shape(None, 64) == (64, 64) and pixels_shape(None, 0) is None
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (12, 100, 80), dtype=np.uint8)
    y = np.arange(12) % 2
    np.savez(tmp_path / "big.npz", x_train=x[:8], y_train=y[:8], x_test=x[8:], y_test=y[8:])
    cfg = config.load(None, ["dataset.name=npz", f"dataset.path={tmp_path / 'big.npz'}",
                             "dataset.source_classes=[]", "dataset.target_classes=[]"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _extract_pixels(cfg, tmp_path / "run")
    assert out["cuts"]["pixels"]["width"] == 64 * 51
    path = tmp_path / "run" / "pixels.h5"
    prov = store.provenance(path)
    assert prov["input_size"] == [64, 51, 1] and prov["resize_method"] == "area"
    assert prov["pixels_size"] == 64 and prov["data_shape"] == [100, 80, 1]
    X, _, ids = store.read(path, "pixels")
    assert ids[0] == "npz/train/00000"
    box = np.asarray(Image.fromarray(x[0]).resize((51, 64), Image.BOX)) / 255.0
    np.testing.assert_allclose(X[0].reshape(64, 51), box, atol=1e-6)
    # New images are resized the same way for prediction.
    from cutpoint import datasets as cds
    ds = cds.load("npz", str(tmp_path / "big.npz"))
    new = embed_images(prov, "pixels", ds.subset([0]))
    np.testing.assert_allclose(new[0], X[0], atol=1e-6)


def test_mixed_size_folder_gets_a_pixel_baseline(tmp_path):
    rng = np.random.default_rng(1)
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (90 + i, 70, 3), dtype=np.uint8)).save(
                tmp_path / "imgs" / c / f"{i}.png")
    cfg = config.load(None, ["dataset.name=folder", f"dataset.path={tmp_path / 'imgs'}",
                             "dataset.source_classes=[]", "dataset.target_classes=[]",
                             "extract.pixels_size=8"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _extract_pixels(cfg, tmp_path / "run")
    assert out["cuts"]["pixels"]["width"] == 8 * 8 * 3 and out["rows"] == 10
    nothing = config.load(None, ["dataset.name=folder", f"dataset.path={tmp_path / 'imgs'}",
                                 "dataset.source_classes=[]", "dataset.target_classes=[]",
                                 "extract.pixels_size=0"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _extract_pixels(nothing, tmp_path / "none") == {"skipped": "variable image sizes"}
