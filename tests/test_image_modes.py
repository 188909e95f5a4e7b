"""Real image folders: every mode decodes to what users expect; damaged files are skipped and
reported (never fatal, never a blank image, never a shifted row). One test per case."""
import warnings

import numpy as np
import pytest
from PIL import Image

from cutpoint import datasets as D
from cutpoint.datasets import DatasetWarning

RNG = np.random.default_rng(0)


def _rgb(path, hw=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(path)
    return path


def _load(root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        return D.load("folder", root)


def _pixels(ds, rel, size=None):
    i = ds.ids.tolist().index(f"folder/{rel}")
    return ds.images([i], size=size)[0]


def _truncated_jpeg(path):
    _rgb(path.with_suffix(".full.jpg"), (64, 64))
    data = path.with_suffix(".full.jpg").read_bytes()
    path.with_suffix(".full.jpg").unlink()
    path.write_bytes(data[:len(data) // 2])
    with Image.open(path) as im:
        im.verify()   # passes: verify does not decode
    return path


def test_truncated_jpeg_is_skipped_with_its_reason(tmp_path):
    _rgb(tmp_path / "a" / "ok.png")
    _rgb(tmp_path / "b" / "ok.png")
    _truncated_jpeg(tmp_path / "b" / "half.jpg")
    with pytest.warns(DatasetWarning, match="skipped 1 file"):
        ds = D.load("folder", tmp_path)
    assert ds.ids.tolist() == ["folder/a/ok.png", "folder/b/ok.png"]
    assert ds.skipped[0][0] == "b/half.jpg" and "truncated" in ds.skipped[0][1]
    assert ds.images([0, 1], size=(8, 8)).shape == (2, 8, 8, 3)


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    ramp = np.array([[0, 257, 32896, 65535]], dtype=np.uint16).repeat(2, 0)
    (tmp_path / "c").mkdir()
    Image.fromarray(ramp).save(tmp_path / "c" / "g16.png")                  # mode I;16
    Image.fromarray(ramp.astype(np.int32), "I").save(tmp_path / "c" / "g32.tif")  # mode I
    ds = _load(tmp_path)
    assert ds.source["modes"] == ["I", "I;16"] and ds.image_shape == (2, 4, 1)
    for rel in ("c/g16.png", "c/g32.tif"):
        assert _pixels(ds, rel)[0, :, 0].tolist() == [0, 1, 128, 255], rel


def test_rgba_and_la_drop_alpha(tmp_path):
    (tmp_path / "c").mkdir()
    Image.fromarray(np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], np.uint8), "RGBA").save(
        tmp_path / "c" / "rgba.png")
    Image.fromarray(np.array([[[77, 0], [99, 128]]], np.uint8), "LA").save(tmp_path / "c" / "la.png")
    ds = _load(tmp_path)
    assert ds.image_shape == (1, 2, 3)   # one colour image: the folder is RGB
    assert _pixels(ds, "c/rgba.png").tolist() == [[[10, 20, 30], [40, 50, 60]]]
    assert _pixels(ds, "c/la.png").tolist() == [[[77] * 3, [99] * 3]]


def test_palette_image_gives_its_colours(tmp_path):
    (tmp_path / "c").mkdir()
    im = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.save(tmp_path / "c" / "pal.png")
    ds = _load(tmp_path)
    assert _pixels(ds, "c/pal.png").tolist() == [[[255, 0, 0], [0, 0, 255]]]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    (tmp_path / "c").mkdir()
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c" / "cmyk.jpg")  # red
    ds = _load(tmp_path)
    px = _pixels(ds, "c/cmyk.jpg")
    assert px.shape == (8, 8, 3) and px[..., 0].mean() > 200 and px[..., 1:].mean() < 60


def test_one_pixel_image_is_resized(tmp_path):
    (tmp_path / "c").mkdir()
    Image.new("RGB", (1, 1), (5, 6, 7)).save(tmp_path / "c" / "dot.png")
    _rgb(tmp_path / "c" / "other.png", (20, 20))
    ds = _load(tmp_path)
    assert ds.image_shape is None
    assert (_pixels(ds, "c/dot.png", size=(16, 16)) == [5, 6, 7]).all()


def test_very_large_image_decodes_and_bomb_limit_is_stated(tmp_path, monkeypatch):
    (tmp_path / "c").mkdir()
    big = np.zeros((8000, 8000, 3), np.uint8)
    big[:, 4000:] = 255
    Image.fromarray(big).save(tmp_path / "c" / "big.jpg", quality=50)
    del big
    ds = _load(tmp_path)
    assert not ds.skipped and D.MAX_PIXELS > 8000 * 8000
    px = _pixels(ds, "c/big.jpg", size=(8, 8))
    assert px[:, :3].max() < 30 and px[:, 5:].min() > 225
    monkeypatch.setattr(D, "MAX_PIXELS", 1000)
    _rgb(tmp_path / "c" / "small.png", (10, 10))
    ds = _load(tmp_path)
    assert ds.ids.tolist() == ["folder/c/small.png"]
    assert "decompression-bomb limit" in ds.skipped[0][1] and "MAX_PIXELS" in ds.skipped[0][1]


def test_exif_rotated_jpeg_is_upright(tmp_path):
    (tmp_path / "c").mkdir()
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = 255                          # stored: white left half, 10 high × 20 wide
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6                           # "rotate 90° clockwise to display"
    im.save(tmp_path / "c" / "rot.jpg", exif=exif, quality=95)
    ds = _load(tmp_path)
    assert ds.image_shape == (20, 10, 3)       # displayed: 20 high × 10 wide
    px = _pixels(ds, "c/rot.jpg").mean(axis=2)
    assert px[:8].mean() > 200 and px[12:].mean() < 50   # white on top after rotation


def test_animated_gif_gives_its_first_frame(tmp_path):
    (tmp_path / "c").mkdir()
    frames = [Image.new("RGB", (6, 6), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "c" / "anim.gif", save_all=True, append_images=frames[1:])
    ds = _load(tmp_path)
    px = _pixels(ds, "c/anim.gif")
    assert px[..., 0].min() > 200 and px[..., 1:].max() < 50


def test_non_image_files_are_skipped_with_a_reason(tmp_path):
    _rgb(tmp_path / "c" / "ok.png")
    (tmp_path / "c" / "notes.txt").write_text("hello")
    (tmp_path / "c" / "fake.jpg").write_text("not a jpeg at all")
    (tmp_path / "c" / "empty.png").write_bytes(b"")
    ds = _load(tmp_path)
    reasons = dict(ds.skipped)
    assert ds.ids.tolist() == ["folder/c/ok.png"]
    assert "not an image extension" in reasons["c/notes.txt"]
    assert "cannot identify image file" in reasons["c/fake.jpg"]
    assert "c/empty.png" in reasons
    ds.write_skipped_report(tmp_path / "skipped.csv")
    assert (tmp_path / "skipped.csv").read_text().count("\n") == 4


def test_empty_class_folder_is_dropped_with_a_warning(tmp_path):
    from cutpoint import config, splits
    for c in ("ant", "bee"):
        for i in range(10):
            _rgb(tmp_path / c / f"{i}.png", (8, 8))
    (tmp_path / "cat").mkdir()                       # empty
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # nothing usable
    with pytest.warns(DatasetWarning, match=r"dropped class folder\(s\) \['cat', 'dog'\]"):
        ds = D.load("folder", tmp_path)
    assert ds.class_names == ["ant", "bee"] and sorted(set(ds.labels.tolist())) == [0, 1]
    assert ds.source["empty_classes_dropped"] == ["cat", "dog"]
    cfg = config.load(None, ["dataset.name=folder", f"dataset.path={tmp_path}",
                             "dataset.source_classes=[]", "dataset.target_classes=[]"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        target = splits.prepare(cfg)["target"]
    for s in ("train", "test"):
        assert (target.class_counts(s) > 0).all(), s


def test_extraction_finishes_without_the_damaged_file_and_says_so(tmp_path, capsys):
    from embeddings import store
    from extract.__main__ import main
    for c in ("a", "b"):
        for i in range(6):
            _rgb(tmp_path / "imgs" / c / f"{i}.png", (16, 16))
    _truncated_jpeg(tmp_path / "imgs" / "b" / "half.jpg")
    run = tmp_path / "run"
    code = main(["--set", "dataset.name=folder", "--set", f"dataset.path={tmp_path / 'imgs'}",
                 "--set", "dataset.source_classes=[]", "--set", "dataset.target_classes=[]",
                 "--set", "backbone.name=plain_cnn", "--set", "backbone.weights=none",
                 "--set", "extract.pixels=false", "--run-dir", str(run)])
    out = capsys.readouterr().out
    assert code == 0
    assert "skipped 1 unreadable file(s)" in out and "skipped_files.csv" in out
    ids = store.read_samples(run / "embeddings.h5")["ids"].tolist()
    assert len(ids) == 12 and "folder/b/half.jpg" not in ids
    assert "b/half.jpg" in (run / "skipped_files.csv").read_text()
    assert (run / "extract.json").exists()
