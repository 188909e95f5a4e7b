"""The extract stage end to end on tiny data: one pass = separate passes, exact resume, skip."""
import numpy as np
import pytest

from cutpoint import config
from conftest import write_toy_npz
from embeddings import store


def _npz(tmp_path):
    return write_toy_npz(tmp_path / "toy.npz")


def _cfg(tmp_path, *sets):
    return config.load(None, [
        "dataset.name=npz", f"dataset.path={_npz(tmp_path)}", "dataset.source_classes=[]",
        "dataset.target_classes=[]", "backbone.name=small_vgg", "backbone.weights=none",
        "extract.batch_size=16", "extract.chunk_rows=32", *sets])


def _all(path):
    return {c: store.read(path, c)[0] for c in store.cuts(path)}


def test_one_pass_equals_separate_single_cut_passes(tmp_path):
    from extract.extractor import extract
    multi = extract(_cfg(tmp_path, "extract.pixels=false"), tmp_path / "multi")
    assert multi["rows"] == 128 and len(multi["cuts"]) >= 3
    both = _all(tmp_path / "multi" / "embeddings.h5")
    for cut in both:
        one = tmp_path / f"one_{cut}"
        extract(_cfg(tmp_path, f"extract.cuts=[\"{cut}\"]", "extract.pixels=false"), one)
        single = _all(one / "embeddings.h5")
        assert list(single) == [cut]
        np.testing.assert_allclose(single[cut], both[cut], rtol=1e-5, atol=1e-6)


def test_interrupted_extraction_resumes_bit_for_bit(tmp_path, monkeypatch):
    from extract import extractor
    cfg = _cfg(tmp_path)
    full = extractor.extract(cfg, tmp_path / "full")
    assert not full["skipped"]

    real_write = store.write_rows
    calls = {"n": 0}

    def crashing_write(path, start, arrays, **kw):
        calls["n"] += 1
        if calls["n"] == 3:  # die in the middle, after two committed chunks
            raise KeyboardInterrupt("simulated kill")
        return real_write(path, start, arrays, **kw)

    monkeypatch.setattr(store, "write_rows", crashing_write)
    with pytest.raises(KeyboardInterrupt):
        extractor.extract(cfg, tmp_path / "resumed")
    part = tmp_path / "resumed" / "embeddings.h5"
    assert store.rows_done(part) == 64 and not store.is_complete(part)
    with pytest.raises(store.StoreError):
        store.read(part, next(iter(store.cuts(part))))  # never a silently short matrix
    monkeypatch.setattr(store, "write_rows", real_write)
    again = extractor.extract(cfg, tmp_path / "resumed")
    assert not again["skipped"] and store.is_complete(part)
    a, b = _all(tmp_path / "full" / "embeddings.h5"), _all(part)
    assert a.keys() == b.keys()
    for cut in a:
        assert np.array_equal(a[cut], b[cut]), cut
    # Same settings again: nothing to do.
    assert extractor.extract(cfg, tmp_path / "resumed")["skipped"]


def test_store_records_provenance_and_pixels_baseline(tmp_path):
    from extract.extractor import extract
    run = tmp_path / "run"
    extract(_cfg(tmp_path), run)
    prov = store.provenance(run / "embeddings.h5")
    for key in ("backbone", "weights", "cuts", "pooling", "input_size", "resize_method",
                "preprocess", "split_def", "seed", "packages", "code_version"):
        assert key in prov, key
    X, y, ids = store.read(run / "pixels.h5", "pixels", split="test")
    assert X.shape == (32, 16 * 16) and X.max() <= 1.0 and len(ids) == 32
    Xe, ye, ide = store.read(run / "embeddings.h5", next(iter(store.cuts(run / "embeddings.h5"))),
                             split="test")
    assert np.array_equal(y, ye) and list(ids) == list(ide)


def test_changed_settings_keep_the_old_store(tmp_path):
    from extract.extractor import extract
    run = tmp_path / "run"
    extract(_cfg(tmp_path, "extract.pixels=false"), run)
    extract(_cfg(tmp_path, "extract.pixels=false", "extract.pooling=max"), run)
    kept = [p for p in run.glob("embeddings.*.h5")]
    assert len(kept) == 1  # moved aside, not deleted
    assert store.cuts(run / "embeddings.h5")[next(iter(store.cuts(run / "embeddings.h5")))][
        "pooling"] == "max"


def test_bad_cut_name_is_a_clear_error(tmp_path):
    from extract.extractor import extract
    with pytest.raises(ValueError, match="block2"):
        extract(_cfg(tmp_path, "extract.cuts=[\"blokc2\"]"), tmp_path / "bad")


@pytest.mark.slow
def test_dask_sharded_extraction_equals_single_process(tmp_path):
    from backbones.weights import load_backbone
    from extract.extractor import extract
    with pytest.raises(ValueError, match="same weights on every worker"):
        extract(_cfg(tmp_path, "extract.pixels=false"), tmp_path / "refused", workers=2)
    model, _, _ = load_backbone("small_vgg", weights="none", input_shape=(16, 16, 1))
    model.save_weights(tmp_path / "init.weights.h5")
    cfg = _cfg(tmp_path, "extract.pixels=false", f"backbone.weights={tmp_path / 'init.weights.h5'}")
    single = extract(cfg, tmp_path / "single")
    sharded = extract(cfg, tmp_path / "sharded", workers=2)
    assert len(sharded["shards"]) == 2 and not list((tmp_path / "sharded" / "shards").glob("*.h5"))
    a, b = tmp_path / "single" / "embeddings.h5", tmp_path / "sharded" / "embeddings.h5"
    assert store.read_samples(a)["ids"].tolist() == store.read_samples(b)["ids"].tolist()
    assert store.provenance(b)["extraction_key"] == single["extraction_key"]
    for cut, X in _all(a).items():
        np.testing.assert_allclose(_all(b)[cut], X, rtol=1e-4, atol=1e-5)
    assert extract(cfg, tmp_path / "sharded", workers=2)["skipped"]


def test_image_folder_of_mixed_sizes_is_resized_and_bad_files_listed(tmp_path):
    from PIL import Image

    from extract.extractor import extract
    rng = np.random.default_rng(0)
    for c, cls in enumerate(["cat", "dog"]):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            h, w = (20 + 3 * i, 24 + c)
            mode = "RGBA" if i == 0 else "RGB"
            Image.fromarray(rng.integers(0, 255, (h, w, len(mode)), dtype=np.uint8), mode).save(
                tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "imgs" / "dog" / "broken.png").write_bytes(b"not an image")
    cfg = config.load(None, [
        "dataset.name=folder", f"dataset.path={tmp_path / 'imgs'}", "dataset.source_classes=[]",
        "dataset.target_classes=[]", "backbone.name=small_vgg", "backbone.weights=none",
        "backbone.input_size=16", "extract.batch_size=4", "extract.pixels=false"])
    out = extract(cfg, tmp_path / "run")
    assert out["rows"] == 12  # the broken file is skipped, not embedded
    prov = store.provenance(tmp_path / "run" / "embeddings.h5")
    assert prov["input_size"] == [16, 16, 3]
    assert prov["skipped_files"] == 1
    assert "broken.png" in (tmp_path / "run" / "skipped_files.csv").read_text()


def test_embed_new_images_like_the_store(tmp_path):
    from backbones.embed import embed_images
    from cutpoint.splits import prepare
    from extract.extractor import extract
    cfg = _cfg(tmp_path)
    extract(cfg, tmp_path / "run")
    target = prepare(cfg)["target"]
    test = target.subset(np.flatnonzero(np.asarray(target.split) == "test"))
    for name in ("embeddings", "pixels"):
        path = tmp_path / "run" / f"{name}.h5"
        cut = list(store.cuts(path))[-1]
        X, _, ids = store.read(path, cut, split="test")
        new = embed_images(store.provenance(path), cut, test)
        assert list(ids) == list(test.ids)
        np.testing.assert_allclose(new, X, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not in the recorded extraction"):
        embed_images(store.provenance(tmp_path / "run" / "embeddings.h5"), "nope", test)
