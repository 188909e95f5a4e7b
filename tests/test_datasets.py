"""Dataset loaders on tiny fixtures written here (IDX gz, image folders, .npz, CIFAR pickles)."""
import csv
import gzip
import io
import os
import pickle
import struct
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_synthetic_idx
from cutpoint import datasets as D
from cutpoint.datasets import DatasetError, DatasetWarning
from cutpoint.datasets import files as F

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No Debian folder, an empty Keras cache, no CUTPOINT_DATA, offline."""
    monkeypatch.setattr(F, "DEBIAN_DIRS", {"fashion_mnist": [tmp_path / "no-debian"]})
    monkeypatch.setattr(F, "keras_roots", lambda: [tmp_path / "keras-home"])
    monkeypatch.delenv("CUTPOINT_DATA", raising=False)
    monkeypatch.setenv("CUTPOINT_OFFLINE", "1")
    return tmp_path


def _write_idx_gz(path, array, magic=None):
    """IDX by hand (not via the module's writer): magic 0x0000 08 ndim, big-endian dims, bytes."""
    array = np.asarray(array, np.uint8)
    head = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    with gzip.open(path, "wb") as f:
        f.write(head + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


def _idx_fixture(folder, n_train=12, n_test=6, shape=(5, 4), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = {}
    for split, n, prefix in (("train", n_train, "train"), ("test", n_test, "t10k")):
        x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        _write_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", x)
        _write_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", y)
        data[split] = (x, y)
    return data


# ----------------------------------------------------------------------------- IDX / fashion_mnist
def test_fashion_mnist_from_cutpoint_data_subfolder(isolated, monkeypatch):
    data = _idx_fixture(isolated / "data" / "fashion-mnist")
    monkeypatch.setenv("CUTPOINT_DATA", str(isolated / "data"))
    with pytest.warns(DatasetWarning, match="published checksums"):
        ds = D.load("fashion_mnist")
    assert len(ds) == 18 and ds.image_shape == (5, 4, 1)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert ds.ids[0] == "fashion_mnist/train/00000" and ds.ids[12] == "fashion_mnist/test/00000"
    assert (ds.split[:12] == "train").all() and (ds.split[12:] == "test").all()
    assert ds.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.labels[12:], data["test"][1])
    # Unsorted rows across the train/test parts come back in the order asked.
    got = ds.images([13, 2, 12])
    assert got.dtype == np.uint8 and got.shape == (3, 5, 4, 1)
    np.testing.assert_array_equal(got[0, ..., 0], data["test"][0][1])
    np.testing.assert_array_equal(got[1, ..., 0], data["train"][0][2])
    np.testing.assert_array_equal(got[2, ..., 0], data["test"][0][0])
    assert ds.source["location"] == "CUTPOINT_DATA" and ds.source["verified"] is False
    assert len(ds.source["files"]) == 4


def test_fashion_mnist_verify_options(isolated, monkeypatch):
    _idx_fixture(isolated / "data")  # directly in CUTPOINT_DATA
    monkeypatch.setenv("CUTPOINT_DATA", str(isolated / "data"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = D.load("fashion_mnist", verify=False)
    assert len(ds) == 18 and ds.source["verified"] is None
    with pytest.raises(DatasetError, match="verify=False"):
        D.load("fashion_mnist", verify=True)


def test_fashion_mnist_checksum_mismatch_in_system_folder_is_an_error(isolated, monkeypatch):
    _idx_fixture(isolated / "fake-debian")
    monkeypatch.setattr(D, "DEBIAN_DIRS", {"fashion_mnist": [isolated / "fake-debian"]})
    with pytest.raises(DatasetError, match="published checksums"):
        D.load("fashion_mnist")
    assert len(D.load("fashion_mnist", verify=False)) == 18


def test_fashion_mnist_from_path(isolated):
    _idx_fixture(isolated / "somewhere", n_train=20, n_test=10)
    ds = D.load("fashion_mnist", path=isolated / "somewhere", verify=False)
    assert len(ds) == 30 and ds.source["location"] == "path"


def test_idx_bad_magic_number(isolated, monkeypatch):
    folder = isolated / "data"
    _idx_fixture(folder)
    _write_idx_gz(folder / "train-images-idx3-ubyte.gz", np.zeros((2, 3, 3)), magic=b"\x12\x34\x08\x03")
    monkeypatch.setenv("CUTPOINT_DATA", str(folder))
    with pytest.raises(DatasetError, match="bad magic number 12340803"):
        D.load("fashion_mnist", verify=False)


def test_idx_swapped_files_truncated_and_not_gzip(tmp_path):
    labels = tmp_path / "labels.gz"
    _write_idx_gz(labels, np.arange(5))
    with pytest.raises(DatasetError, match="1 dimension"):
        D.read_idx(labels, expect_ndim=3)
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 4, 2, 2) + b"\x00" * 10)
    with pytest.raises(DatasetError, match="truncated"):
        D.read_idx(short)
    junk = tmp_path / "junk.gz"
    junk.write_bytes(b"this is not gzip at all")
    with pytest.raises(DatasetError, match="Cannot read"):
        D.read_idx(junk)


def test_write_idx_round_trip(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    np.testing.assert_array_equal(D.read_idx(D.write_idx(tmp_path / "a.gz", x)), x)
    y = np.arange(-3, 3, dtype=np.int32)
    np.testing.assert_array_equal(D.read_idx(D.write_idx(tmp_path / "b", y)), y)


def test_synthetic_idx_fixture_loads(isolated, monkeypatch):
    write_synthetic_idx(isolated / "syn", n_train=30, n_test=10)
    monkeypatch.setenv("CUTPOINT_DATA", str(isolated / "syn"))
    ds = D.load("fashion_mnist", verify=False)
    assert len(ds) == 40 and set(ds.labels.tolist()) == set(range(10))


def test_nothing_found_message(isolated):
    with pytest.raises(DatasetError) as err:
        D.load("fashion_mnist")
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "CUTPOINT_DATA" in msg
    assert "CUTPOINT_OFFLINE" in msg and str(isolated / "no-debian") in msg


def test_mnist_idx_subfolder_and_npz(isolated, monkeypatch):
    data = _idx_fixture(isolated / "data" / "mnist", n_train=10, n_test=5)
    monkeypatch.setenv("CUTPOINT_DATA", str(isolated / "data"))
    ds = D.load("mnist", verify=False)
    assert len(ds) == 15 and ds.class_names == [str(i) for i in range(10)]
    assert ds.ids[3] == "mnist/train/00003"
    monkeypatch.delenv("CUTPOINT_DATA")
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    np.savez(isolated / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    ds2 = D.load("mnist", path=isolated / "mnist.npz", verify=False)
    np.testing.assert_array_equal(ds2.images(np.arange(15)), ds.images(np.arange(15)))
    with pytest.raises(DatasetError, match="MNIST not found"):
        D.load("mnist", path=isolated / "empty")


# ----------------------------------------------------------------------------- image folders
def _png(path, mode, size, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def _folder_fixture(root):
    rng = np.random.default_rng(0)
    (root / "cat").mkdir(parents=True)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)  # H=12, W=10
    Image.fromarray(rgb).save(root / "cat" / "a_rgb.png")
    rgba = np.dstack([rgb, np.full((12, 10), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "cat" / "b_rgba.png")
    (root / "cat" / "c_corrupt.jpg").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    _png(root / "dog" / "d_gray.png", "L", (8, 16), 99)  # W=8, H=16
    Image.new("RGB", (20, 15), (10, 200, 30)).save(root / "dog" / "e.jpg", quality=95)
    pal = Image.new("P", (10, 12))
    pal.putpalette([255, 0, 0] * 256)
    pal.save(root / "dog" / "f_palette.png")
    (root / "dog" / "notes.txt").write_text("not an image")
    return rgb


def test_folder_mixed_images_and_skipped_report(tmp_path):
    rgb = _folder_fixture(tmp_path / "imgs")
    with pytest.warns(DatasetWarning, match="skipped 2 file"):
        ds = D.load("folder", tmp_path / "imgs")
    assert ds.class_names == ["cat", "dog"] and len(ds) == 5
    assert ds.ids.tolist() == ["folder/cat/a_rgb.png", "folder/cat/b_rgba.png",
                               "folder/dog/d_gray.png", "folder/dog/e.jpg", "folder/dog/f_palette.png"]
    assert ds.labels.tolist() == [0, 0, 1, 1, 1] and (ds.split == "train").all()
    assert ds.image_shape is None
    reasons = dict(ds.skipped)
    assert set(reasons) == {"cat/c_corrupt.jpg", "dog/notes.txt"}
    assert "UnidentifiedImageError" in reasons["cat/c_corrupt.jpg"]
    report = ds.write_skipped_report(tmp_path / "out" / "skipped.csv")
    rows = list(csv.DictReader(open(report)))
    assert {r["path"] for r in rows} == set(reasons) and all(r["reason"] for r in rows)
    with pytest.raises(DatasetError, match="size="):
        ds.images([0, 2])
    # Same-size rows need no size; RGBA drops alpha; grayscale → RGB (not all gray).
    same = ds.images([0, 1])
    assert same.shape == (2, 12, 10, 3)
    np.testing.assert_array_equal(same[0], rgb)
    np.testing.assert_array_equal(same[1], rgb)
    out = ds.images([4, 2, 0], size=(6, 5))
    assert out.shape == (3, 6, 5, 3) and out.dtype == np.uint8
    assert (out[1] == 99).all()  # gray 99 repeated in R, G, B (uniform, resize keeps it)
    assert (out[0] == [255, 0, 0]).all()  # palette → RGB
    assert ds.source["split_rule"].startswith("all train") and ds.source["n_skipped"] == 2


def test_folder_all_grayscale_stays_one_channel(tmp_path):
    _png(tmp_path / "g" / "a" / "1.png", "L", (7, 5), 10)
    _png(tmp_path / "g" / "b" / "2.png", "L", (7, 5), 250)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = D.load("folder", tmp_path / "g")
    assert ds.image_shape == (5, 7, 1) and ds.skipped == []
    x = ds.images([1, 0])
    assert x.shape == (2, 5, 7, 1) and (x[0] == 250).all() and (x[1] == 10).all()
    # Subsets are views on the same files and keep working.
    assert ds.subset([1]).images([0])[0, 0, 0, 0] == 250


def test_folder_train_test_subfolders(tmp_path):
    root = tmp_path / "tt"
    for split, n in (("train", 3), ("test", 2)):
        for c in ("x", "y"):
            for i in range(n):
                _png(root / split / c / f"{i}.png", "RGB", (4, 4), (i, 0, 0))
    ds = D.load("folder", root)
    assert ds.class_names == ["x", "y"] and len(ds) == 10
    assert (ds.split == "train").sum() == 6 and (ds.split == "test").sum() == 4
    assert all(i.startswith(f"folder/{s}/") for i, s in zip(ds.ids, ds.split))
    assert ds.source["split_rule"] == "train/ and test/ folders"


def test_folder_split_csv(tmp_path):
    root = tmp_path / "sc"
    for c in ("p", "q"):
        for i in range(3):
            _png(root / c / f"{i}.png", "RGB", (4, 4), (0, i, 0))
    lines = ["path,split", "./p\\0.png,test"] + [f"{c}/{i}.png,{'test' if i == 0 else 'train'}"
                              for c in ("p", "q") for i in range(3) if (c, i) not in (("q", 2), ("p", 0))]
    lines.append("q/missing.png,train")
    (root / "split.csv").write_text("\n".join(lines) + "\n")
    with pytest.warns(DatasetWarning, match="skipped 2"):
        ds = D.load("folder", root)
    assert len(ds) == 5 and (ds.split == "test").sum() == 2
    reasons = dict(ds.skipped)
    assert reasons["q/2.png"] == "not listed in split.csv"
    assert "not found" in reasons["q/missing.png"]
    assert ds.source["split_file"]["sha256"]
    (root / "split.csv").write_text("path,split\np/0.png,validation\n")
    with pytest.raises(DatasetError, match="'validation'"):
        D.load("folder", root)


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        D.load("folder", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No class sub-folders"):
        D.load("folder", tmp_path / "empty")


# ----------------------------------------------------------------------------- npz
def test_npz_round_trip_and_float_conversion(tmp_path):
    rng = np.random.default_rng(3)
    xtr = rng.integers(0, 256, (8, 6, 6, 3), dtype=np.uint8)
    xte = rng.integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
    ytr, yte = np.arange(8) % 3, np.arange(4) % 3
    np.savez(tmp_path / "d.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte.reshape(-1, 1),
             class_names=np.array(["a", "b", "c"]))
    ds = D.load("npz", tmp_path / "d.npz")
    assert ds.class_names == ["a", "b", "c"] and ds.image_shape == (6, 6, 3)
    np.testing.assert_array_equal(ds.images(np.arange(12)), np.concatenate([xtr, xte]))
    np.testing.assert_array_equal(ds.labels, np.concatenate([ytr, yte]))
    assert ds.source["files"]["d.npz"]["sha256"]
    # floats in [0, 1] are scaled by 255 and rounded (documented), (N, H, W) gets a channel axis
    np.savez(tmp_path / "f.npz", x_train=xtr[..., 0] / 255.0, y_train=ytr,
             x_test=xte[..., 0] / 255.0, y_test=yte)
    f = D.load("npz", tmp_path / "f.npz")
    np.testing.assert_array_equal(f.images([0])[0, ..., 0], xtr[0, ..., 0])
    assert f.image_shape == (6, 6, 1) and any("×255" in c for c in f.source["conversion"])
    np.savez(tmp_path / "bad.npz", x_train=xtr * 300.0, y_train=ytr, x_test=xte, y_test=yte)
    with pytest.raises(DatasetError, match="expected \\[0, 1\\] or \\[0, 255\\]"):
        D.load("npz", tmp_path / "bad.npz")


def test_npz_missing_keys(tmp_path):
    np.savez(tmp_path / "m.npz", x_train=np.zeros((2, 3, 3), np.uint8), y_train=[0, 1],
             images=np.zeros((1, 3, 3), np.uint8))
    with pytest.raises(DatasetError) as err:
        D.load("npz", tmp_path / "m.npz")
    msg = str(err.value)
    assert "['x_test', 'y_test']" in msg and "images" in msg and "x_train" in msg


# ----------------------------------------------------------------------------- digits
def test_digits_loader():
    ds = D.load("digits")
    assert len(ds) == 1797 and ds.image_shape == (8, 8, 1)
    x = ds.images(np.arange(len(ds)))
    assert x.dtype == np.uint8 and x.max() == 255 and x.min() == 0
    test = ds.split == "test"
    assert 0.18 < test.mean() < 0.22
    for c in range(10):  # stratified: every class ~20 % test
        frac = test[ds.labels == c].mean()
        assert abs(frac - 0.2) < 0.02
    again = D.load("digits")
    np.testing.assert_array_equal(again.split, ds.split)
    assert ds.ids[0].startswith("digits/")


# ----------------------------------------------------------------------------- CIFAR
def _batch(n, label_key, labels, rng):
    return {b"batch_label": b"tiny", label_key: [int(v) for v in labels],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def _add(tar, name, obj):
    data = pickle.dumps(obj, protocol=2)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _cifar10_archive(path, per_batch=4):
    rng = np.random.default_rng(5)
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            b = _batch(per_batch, b"labels", rng.integers(0, 10, per_batch), rng)
            batches[name] = b
            _add(tar, f"cifar-10-batches-py/{name}", b)
        _add(tar, "cifar-10-batches-py/batches.meta",
             {b"label_names": [n.encode() for n in D.CIFAR10_CLASSES], b"num_vis": 3072})
    return batches


def _to_hwc(data):
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def test_cifar10_archive_and_extracted_folder(isolated):
    arch = isolated / "cifar-10-python.tar.gz"
    batches = _cifar10_archive(arch)
    ds = D.load("cifar10", path=arch, verify=False)
    assert len(ds) == 24 and ds.image_shape == (32, 32, 3)
    assert ds.class_names == D.CIFAR10_CLASSES
    assert (ds.split == "train").sum() == 20 and ds.ids[20] == "cifar10/test/00000"
    np.testing.assert_array_equal(ds.images([5])[0], _to_hwc(batches["data_batch_2"][b"data"])[1])
    np.testing.assert_array_equal(ds.images([21])[0], _to_hwc(batches["test_batch"][b"data"])[1])
    np.testing.assert_array_equal(ds.labels[20:], batches["test_batch"][b"labels"])
    with pytest.warns(DatasetWarning, match="published checksums"):
        D.load("cifar10", path=isolated)  # folder holding the archive; unofficial bytes warn
    with tarfile.open(arch) as tar:
        tar.extractall(isolated / "x", filter="data")
    ex = D.load("cifar10", path=isolated / "x")  # folder holding cifar-10-batches-py/
    np.testing.assert_array_equal(ex.images(np.arange(24)), ds.images(np.arange(24)))
    assert ex.source["verified"] is None


def test_cifar100_fine_and_coarse(isolated):
    rng = np.random.default_rng(2)
    arch = isolated / "cifar-100-python.tar.gz"
    with tarfile.open(arch, "w:gz") as tar:
        for name, n in (("train", 6), ("test", 3)):
            b = _batch(n, b"fine_labels", rng.integers(0, 100, n), rng)
            b[b"coarse_labels"] = [int(v) for v in rng.integers(0, 20, n)]
            _add(tar, f"cifar-100-python/{name}", b)
        _add(tar, "cifar-100-python/meta",
             {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
              b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
    fine = D.load("cifar100", path=arch, verify=False)
    assert len(fine) == 9 and len(fine.class_names) == 100 and fine.class_names[3] == "f3"
    coarse = D.load("cifar100", path=arch, verify=False, label_mode="coarse")
    assert coarse.class_names[0] == "c0" and coarse.labels.max() < 20


def test_cifar_pickle_cannot_run_code(isolated):
    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())
    arch = isolated / "evil.tar.gz"
    with tarfile.open(arch, "w:gz") as tar:
        _add(tar, "cifar-10-batches-py/data_batch_1", {b"data": Evil(), b"labels": [0]})
        _add(tar, "cifar-10-batches-py/test_batch", {b"data": Evil(), b"labels": [0]})
    with pytest.raises(DatasetError, match="refusing"):
        D.load("cifar10", path=arch, verify=False)


def test_cifar_not_found_offline(isolated):
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz"):
        D.load("cifar10")


# ----------------------------------------------------------------------------- Dataset API
def test_subset_is_a_view_and_relabels(tmp_path):
    ds = D.load("digits")
    sub = ds.subset(np.flatnonzero(np.isin(ds.labels, [3, 8])), relabel_classes=[8, 3])
    assert sub._store is ds._store and sub._store.parts[0] is ds._store.parts[0]
    assert sub.class_names == ["8", "3"] and sub.class_ids == [8, 3]
    orig = ds.labels[np.isin(ds.labels, [3, 8])]
    np.testing.assert_array_equal(sub.labels, np.where(orig == 8, 0, 1))
    rows = np.flatnonzero(np.isin(ds.labels, [3, 8]))
    np.testing.assert_array_equal(sub.images([4, 0]), ds.images(rows[[4, 0]]))
    with pytest.raises(DatasetError, match="not in relabel_classes"):
        ds.subset([0, 1, 2], relabel_classes=[1])
    batches = list(sub.iter_batches(batch_size=100))
    assert sum(len(i) for i, _ in batches) == len(sub) and batches[0][1].shape[1:] == (8, 8, 1)
    assert ds.images([0], size=(16, 16)).shape == (1, 16, 16, 1)


def test_registry_errors():
    assert {"fashion_mnist", "mnist", "cifar10", "cifar100", "digits", "folder", "npz"} <= \
        set(D.available())
    with pytest.raises(DatasetError, match="Did you mean 'cifar10'"):
        D.load("cifar_10")
    with pytest.raises(DatasetError, match="does not take"):
        D.load("digits", verify=True)


# ----------------------------------------------------------------------------- the real thing
@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_debian_fashion_mnist(monkeypatch):
    monkeypatch.delenv("CUTPOINT_DATA", raising=False)
    ds = D.load("fashion_mnist")
    assert (ds.split == "train").sum() == 60000 and (ds.split == "test").sum() == 10000
    assert ds.source["location"] == "debian" and ds.source["verified"] is True
    assert ds.source["files"]["train-images-idx3-ubyte.gz"]["sha256"].startswith("b0564c3e")
    assert np.bincount(ds.labels[ds.split == "train"]).tolist() == [6000] * 10
    x = ds.images([0, 69999])
    assert x.shape == (2, 28, 28, 1) and x.max() > 0
    with pytest.raises(DatasetError, match="official 'fashion_mnist' files"):
        D.load("mnist", path=DEBIAN)
