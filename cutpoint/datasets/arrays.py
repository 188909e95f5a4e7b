"""The loaders of array datasets: fashion_mnist and mnist (IDX files or mnist.npz), cifar10 and
cifar100 (the python archive), digits (scikit-learn's) and npz (a user's arrays).

Each returns a `Dataset` over an `ArrayStore` that keeps the files' arrays as they are, with a
provenance record (`source`: loader, location, files and their sha256, verified or not).
"""
from __future__ import annotations

import os
import pickle
import tarfile
import warnings
import zlib
from pathlib import Path

import numpy as np

from cutpoint.datasets import files as places   # read at call time: tests patch them
from cutpoint.datasets.errors import DatasetError, DatasetWarning
from cutpoint.datasets.files import (IDX_FILES, idx_files_in, keras_download, not_found,
                                     read_idx, user_dirs, verify_files)
from cutpoint.datasets.sampling import carve_validation
from cutpoint.datasets.view import ArrayStore, Dataset, array_dataset
from cutpoint.provenance import sha256_file

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck"]


# ----------------------------------------------------------------------------- fashion_mnist, mnist
def _load_idx_dir(dataset, class_names, files, kind, verify) -> Dataset:
    prov = verify_files(dataset, {p.name: p for p in files.values()}, kind, verify)
    parts, labels = [], []
    for split, (img_name, lab_name) in IDX_FILES.items():
        x = read_idx(files[img_name], expect_ndim=3)
        y = read_idx(files[lab_name], expect_ndim=1)
        if len(x) != len(y):
            raise DatasetError(f"{files[img_name]} holds {len(x)} images but {files[lab_name]} "
                               f"holds {len(y)} labels. Replace the damaged file.")
        if x.dtype != np.uint8:
            raise DatasetError(f"{files[img_name]}: images must be unsigned bytes (IDX type 0x08); "
                               f"got {x.dtype}.")
        if len(y) and (y.min() < 0 or y.max() >= len(class_names)):
            raise DatasetError(f"{files[lab_name]}: labels must lie in 0..{len(class_names) - 1}; "
                               f"got {y.min()}..{y.max()}.")
        parts.append(x)
        labels.append(y)
    source = {"loader": f"{dataset}:idx", "location": kind,
              "path": str(Path(next(iter(files.values()))).parent.resolve()), **prov}
    return array_dataset(dataset, class_names, parts, labels, ["train", "test"], source)


def _fashion_dirs(path) -> list[tuple[str, Path]]:
    return (user_dirs(path, "fashion-mnist")
            + [("debian", d) for d in places.DEBIAN_DIRS.get("fashion_mnist", [])]
            + [("keras_cache", r / "datasets" / "fashion-mnist") for r in places.keras_roots()])



def load_fashion_mnist(path="", verify=None) -> Dataset:
    """Zalando's Fashion-MNIST: 60000 train + 10000 test 28×28 grayscale, 10 classes."""
    tried = [] if os.environ.get("CUTPOINT_DATA") else ["$CUTPOINT_DATA: not set"]
    for attempt in (0, 1):
        for kind, d in _fashion_dirs(path):
            files, why = idx_files_in(d)
            if files:
                return _load_idx_dir("fashion_mnist", FASHION_MNIST_CLASSES, files, kind, verify)
            if attempt == 0:
                tried.append(f"{d} ({kind}): {why}")
        if attempt == 0:
            got = keras_download("fashion_mnist", tried)
            if got is None:
                break
    else:  # downloaded but not found in a cache folder we know: use the arrays as they are
        (xtr, ytr), (xte, yte) = got
        return array_dataset("fashion_mnist", FASHION_MNIST_CLASSES, [xtr, xte], [ytr, yte],
                              ["train", "test"], {"loader": "keras.datasets.fashion_mnist",
                                                  "location": "download", "verified": None})
    raise not_found("Fashion-MNIST", tried, (
        "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu: installs the four files in "
        "/usr/share/datasets/fashion-mnist/, offline from then on); or set CUTPOINT_DATA to a "
        "folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (directly or in a fashion-mnist/ "
        "subfolder); or run once with network access and CUTPOINT_OFFLINE unset so that Keras "
        "downloads it to ~/.keras/datasets/fashion-mnist/."))


def load_mnist(path="", verify=None) -> Dataset:
    """LeCun's MNIST digits: 60000 train + 10000 test 28×28 grayscale (IDX files or mnist.npz)."""
    names = [str(i) for i in range(10)]
    tried = [] if os.environ.get("CUTPOINT_DATA") else ["$CUTPOINT_DATA: not set"]
    cands = user_dirs(path, "mnist") + [("keras_cache", r / "datasets")
                                        for r in places.keras_roots()]
    for attempt in (0, 1):
        for kind, d in cands:
            if d.is_file() and d.suffix == ".npz":
                return _load_npz_arrays("mnist", d, names, kind, verify)
            files, why = idx_files_in(d)
            if files:
                return _load_idx_dir("mnist", names, files, kind, verify)
            if (d / "mnist.npz").is_file():
                return _load_npz_arrays("mnist", d / "mnist.npz", names, kind, verify)
            if attempt == 0:
                tried.append(f"{d} ({kind}): {why}" + ("; no mnist.npz" if d.is_dir() else ""))
        if attempt == 0 and keras_download("mnist", tried) is None:
            break
    raise not_found("MNIST", tried, (
        "set CUTPOINT_DATA (or dataset.path) to a folder holding the four IDX files "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz (or Keras' mnist.npz); or run once with network access and "
        "CUTPOINT_OFFLINE unset so that Keras downloads ~/.keras/datasets/mnist.npz."))



# ----------------------------------------------------------------------------- CIFAR
_PICKLE_ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
                   ("numpy.core.multiarray", "_reconstruct"),
                   ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                   ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                   ("_codecs", "encode")}


class _SafeUnpickler(pickle.Unpickler):
    """CIFAR's batches are pickles: allow only what rebuilds numpy arrays, never code."""

    def find_class(self, module, name):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset pickle "
                                     f"(the file may be damaged or malicious)")


def _unpickle(data: bytes, where: str) -> dict:
    import io
    try:
        d = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"Cannot read {where} as a CIFAR python batch ({type(e).__name__}: "
                           f"{e}). Use the official 'python version' archive.") from e
    if not isinstance(d, dict):
        raise DatasetError(f"{where} is not a CIFAR python batch (a pickled dict); got "
                           f"{type(d).__name__}.")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


_CIFAR = {  # name → (archive, inner folder, train members, test member, meta member, names key)
    "cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py",
                [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta",
                "label_names"),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", ["train"], "test", "meta",
                 "{mode}_label_names"),
}


def _cifar_members(src: Path, inner: str, wanted: list[str]) -> dict[str, bytes] | None:
    """Raw bytes of the wanted members of an archive or extracted folder (None if absent)."""
    if src.is_file():
        try:
            with tarfile.open(src, "r:*") as tar:
                out = {}
                for m in tar.getmembers():
                    base = m.name.rsplit("/", 1)[-1]
                    if m.isfile() and base in wanted and base not in out:
                        out[base] = tar.extractfile(m).read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DatasetError(f"Cannot read the archive {src} ({type(e).__name__}: {e}). "
                               f"Replace it with the official download.") from e
        return out
    folder = src / inner if (src / inner).is_dir() else src
    return {n: (folder / n).read_bytes() for n in wanted if (folder / n).is_file()}


def _load_cifar(name: str, path, verify, label_mode="fine") -> Dataset:
    archive, inner, train_members, test_member, meta, names_key = _CIFAR[name]
    names_key = names_key.format(mode=label_mode)
    label_key = "labels" if name == "cifar10" else f"{label_mode}_labels"
    tried = [] if os.environ.get("CUTPOINT_DATA") else ["$CUTPOINT_DATA: not set"]
    roots = user_dirs(path)
    cache = [("keras_cache", r / "datasets" / f"{inner}-target") for r in places.keras_roots()] + \
            [("keras_cache", r / "datasets") for r in places.keras_roots()]
    for attempt in (0, 1):
        for kind, d in roots + cache:
            for src in ([d] if d.is_file() else [d / archive, d / inner, d]):
                if not src.exists() or (src.is_dir() and not
                                        ((src / test_member).is_file() or (src / inner).is_dir())):
                    continue
                if src.is_file() and not tarfile.is_tarfile(src):
                    raise DatasetError(f"{src} is not a tar archive. Expected the official "
                                       f"{archive} or its extracted {inner}/ folder.")
                return _read_cifar(name, src, kind, verify, label_key, names_key)
            if attempt == 0:
                tried.append(f"{d} ({kind}): no {archive} or {inner}/")
        if attempt == 0 and keras_download(name, tried) is None:
            break
    raise not_found(name, tried, (
        f"set dataset.path (or CUTPOINT_DATA) to the official python archive {archive} (or its "
        f"extracted {inner}/ folder, or a folder holding either); or run once with network access "
        f"and CUTPOINT_OFFLINE unset so that Keras downloads it to ~/.keras/datasets/."))


def _read_cifar(name, src: Path, kind, verify, label_key, names_key) -> Dataset:
    archive, inner, train_members, test_member, meta, _ = _CIFAR[name]
    wanted = train_members + [test_member, meta]
    # The archive is checked against the official one whatever its file name; extracted
    # folders have no published checksum.
    prov = (verify_files(name, {archive: src}, kind, verify) if src.is_file()
            else {"files": None, "verified": None})
    raw = _cifar_members(src, inner, wanted)
    present = [m for m in train_members if m in raw]
    if not present or test_member not in raw:
        raise DatasetError(f"{src} does not hold the CIFAR python batches: found {sorted(raw)}, "
                           f"expected {train_members} and {test_member!r}.")
    parts, labels = [], []
    for member in present + [test_member]:
        d = _unpickle(raw.pop(member), f"{src}:{member}")
        if "data" not in d or label_key not in d:
            raise DatasetError(f"{src}:{member} lacks 'data' or {label_key!r} (keys: {sorted(d)}).")
        data = np.asarray(d["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise DatasetError(f"{src}:{member}: 'data' must be (N, 3072) bytes; got {data.shape}.")
        parts.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # a view, no copy
        labels.append(np.asarray(d[label_key], dtype=np.int64))
    n_classes = 10 if name == "cifar10" else (100 if "fine" in label_key else 20)
    class_names = list(CIFAR10_CLASSES) if name == "cifar10" else [str(i) for i in range(n_classes)]
    if meta in raw:
        m = _unpickle(raw[meta], f"{src}:{meta}")
        got = m.get(names_key)
        if got is not None and len(got) == n_classes:
            class_names = [c.decode() if isinstance(c, bytes) else str(c) for c in got]
    n_train = sum(len(p) for p in parts[:-1])
    width = max(5, len(str(max(n_train, len(parts[-1])) - 1)))
    ids = [f"{name}/train/{i:0{width}d}" for i in range(n_train)] + \
          [f"{name}/test/{i:0{width}d}" for i in range(len(parts[-1]))]
    split = ["train"] * n_train + ["test"] * len(parts[-1])
    for p, lab, member in zip(parts, labels, present + [test_member]):
        if len(p) != len(lab):
            raise DatasetError(f"{src}:{member}: {len(p)} images but {len(lab)} labels.")
    source = {"loader": f"{name}:python-pickle", "location": kind, "path": str(src.resolve()),
              "label_mode": label_key, **prov}
    store = ArrayStore(parts)  # train batches and test kept apart: no concatenated copy
    return Dataset(name, class_names, np.concatenate(labels), np.array(ids), np.array(split),
                   source, store.shape, _store=store)


def load_cifar10(path="", verify=None) -> Dataset:
    """CIFAR-10 (50000 train + 10000 test 32×32 RGB, 10 classes) from the python archive."""
    return _load_cifar("cifar10", path, verify)


def load_cifar100(path="", verify=None, label_mode="fine") -> Dataset:
    """CIFAR-100 from the python archive; `label_mode` 'fine' (100 classes) or 'coarse' (20)."""
    if label_mode not in ("fine", "coarse"):
        raise DatasetError(f"label_mode must be 'fine' or 'coarse'; got {label_mode!r}.")
    return _load_cifar("cifar100", path, verify, label_mode)


# ----------------------------------------------------------------------------- digits
DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED = 0.2, 0


def load_digits(path="") -> Dataset:
    """scikit-learn's 1797 8×8 digits (shipped with sklearn: always offline). Pixel values
    0..16 → 0..255 (×255/16, rounded). Split: stratified 20 % test, seed 0 (fixed)."""
    from sklearn.datasets import load_digits as sk_digits
    if path:
        warnings.warn("digits ships with scikit-learn; dataset.path is ignored.", DatasetWarning,
                      stacklevel=3)
    bunch = sk_digits()
    x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    y = bunch.target.astype(np.int64)
    _, test = carve_validation(y, np.arange(len(y)), DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    split = np.full(len(y), "train", dtype="<U5")
    split[test] = "test"
    ids = [f"digits/{s}/{i:05d}" for i, s in enumerate(split)]
    store = ArrayStore([x])
    source = {"loader": "sklearn.datasets.load_digits", "location": "sklearn",
              "split_rule": (f"stratified test fraction {DIGITS_TEST_FRACTION}, "
                             f"seed {DIGITS_SPLIT_SEED}"),
              "scaling": "x*255/16 rounded", "verified": None}
    return Dataset("digits", [str(i) for i in range(10)], y, np.array(ids), split, source,
                   store.shape, _store=store)


# ----------------------------------------------------------------------------- npz
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _to_uint8(x: np.ndarray, key: str, where) -> tuple[np.ndarray, str | None]:
    """uint8 as is; integers in 0..255 cast; floats: max ≤ 1 → ×255, else in [0, 255]; rounded."""
    if x.dtype == np.uint8:
        return x, None
    if x.size == 0:
        return x.astype(np.uint8), None
    lo, hi = float(x.min()), float(x.max())
    if np.issubdtype(x.dtype, np.integer):
        if lo < 0 or hi > 255:
            raise DatasetError(f"{where}: {key} holds integers in {lo:g}..{hi:g}; expected 0..255.")
        return x.astype(np.uint8), f"{key}: {x.dtype} cast to uint8"
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite([lo, hi]).all() or lo < 0 or hi > 255:
            raise DatasetError(f"{where}: {key} holds floats in {lo:g}..{hi:g}; expected [0, 1] "
                               f"or [0, 255]. Rescale it, or save uint8 pixels.")
        if hi <= 1.0:
            return np.rint(x * 255.0).astype(np.uint8), f"{key}: float in [0,1] ×255, rounded"
        return np.rint(x).astype(np.uint8), f"{key}: float in [0,255] rounded"
    raise DatasetError(f"{where}: {key} has dtype {x.dtype}; expected uint8 (or floats).")


def _load_npz_arrays(name, path: Path, class_names, kind, verify) -> Dataset:
    path = Path(path)
    if kind != "npz":
        prov = verify_files(name, {path.name: path}, kind, verify)
    else:
        prov = {"files": {path.name: {"sha256": sha256_file(path),
                                      "bytes": path.stat().st_size}}, "verified": None}
    try:
        f = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"Cannot read {path} as a .npz file ({type(e).__name__}: {e}).") from e
    with f:
        missing = [k for k in NPZ_KEYS if k not in f.files]
        if missing:
            raise DatasetError(f"{path} lacks the key(s) {missing}. Found keys: {sorted(f.files)}; "
                               f"expected {list(NPZ_KEYS)} (+ optional 'class_names'). Save it "
                               f"with "
                               f"np.savez(path, x_train=…, y_train=…, x_test=…, y_test=…).")
        parts, labels, notes = [], [], []
        for s in ("train", "test"):
            x, y = f[f"x_{s}"], f[f"y_{s}"]
            if x.ndim == 3:
                x = x[..., None]
            if x.ndim != 4 or x.shape[-1] not in (1, 3):
                raise DatasetError(f"{path}: x_{s} has shape {x.shape}; expected (N, H, W) or "
                                   f"(N, H, W, C) with C = 1 or 3.")
            x, note = _to_uint8(x, f"x_{s}", path)
            notes += [note] if note else []
            y = np.asarray(y).reshape(len(y), -1) if np.ndim(y) > 1 else np.asarray(y)
            if y.ndim != 1 and y.shape[1] != 1:
                raise DatasetError(f"{path}: y_{s} has shape {f[f'y_{s}'].shape}; expected (N,) "
                                   f"integer labels, not one-hot.")
            y = y.ravel()
            if len(y) and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0):
                raise DatasetError(f"{path}: y_{s} must hold integer labels ≥ 0; got dtype "
                                   f"{y.dtype}, min {y.min()}.")
            parts.append(x)
            labels.append(y.astype(np.int64))
        if parts[0].shape[1:] != parts[1].shape[1:]:
            raise DatasetError(f"{path}: x_train images are {parts[0].shape[1:]} but x_test images "
                               f"are {parts[1].shape[1:]}; they must match.")
        k = int(max((lab.max() for lab in labels if len(lab)), default=-1)) + 1
        if class_names is None:
            if "class_names" in f.files:
                class_names = [str(c) for c in f["class_names"]]
                if len(class_names) < k:
                    raise DatasetError(f"{path}: {len(class_names)} class_names but labels go up "
                                       f"to {k - 1}.")
            else:
                class_names = [str(i) for i in range(k)]
    source = {"loader": f"{name}:npz", "location": kind, "path": str(path.resolve()), **prov}
    if notes:
        source["conversion"] = notes
    return array_dataset(name, class_names, parts, labels, ["train", "test"], source)


def load_npz(path="") -> Dataset:
    """A .npz with x_train, y_train, x_test, y_test ((N,H,W) or (N,H,W,C) uint8; floats in [0,1]
    are ×255 and floats in [0,255] rounded, recorded in source['conversion']) and optional
    class_names (a str array)."""
    if not path:
        raise DatasetError("The npz dataset needs dataset.path: a .npz file with x_train, y_train, "
                           "x_test, y_test.")
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"npz file {str(p)!r} not found. Set dataset.path to an existing .npz.")
    return _load_npz_arrays("npz", p, None, "npz", False)
