"""Datasets behind one interface: `load(name, path)` → `Dataset`.

A `Dataset` is labels (int64, 0..K-1), class names, stable string sample ids
(``"fashion_mnist/train/00042"``), the dataset's own split per sample ('train'/'test') and a
provenance record (`source`: loader, location, files and their sha256). Pixels are not attributes:
`images(idx)` returns uint8 (n, H, W, C) for the requested rows only, so extraction can stream
batches. Array datasets keep each file's array once (several "parts", never concatenated);
views made by `subset` share them through an index array; image folders are scanned by fully
decoding every file in parallel threads (`scan_images`: damaged files are skipped and reported
before any split is decided) and decoded again lazily in `images()`.

Loaders (`available()`): fashion_mnist, mnist, cifar10, cifar100, digits, folder, npz.

Where the data comes from (first hit wins; every place tried is listed in the error otherwise):
  fashion_mnist  $CUTPOINT_DATA/fashion-mnist/, $CUTPOINT_DATA/, `path`,
                 /usr/share/datasets/fashion-mnist/ (Debian: dataset-fashion-mnist),
                 Keras' cache (~/.keras/datasets/fashion-mnist/), then Keras' download.
  mnist          $CUTPOINT_DATA/mnist/, $CUTPOINT_DATA/ (IDX .gz files or mnist.npz), `path`,
                 Keras' cache (~/.keras/datasets/mnist.npz), then Keras' download.
  cifar10/100    $CUTPOINT_DATA, `path` (the official python archive cifar-10-python.tar.gz /
                 cifar-100-python.tar.gz, its extracted cifar-10-batches-py/ / cifar-100-python/
                 folder, or a folder holding either), Keras' cache, then Keras' download.
Downloads happen only when CUTPOINT_OFFLINE is unset (or "", "0", "false", "no").

Checksums (`verify=`): files with a published sha256 (the four IDX files of Fashion-MNIST and
MNIST, Keras' mnist.npz, the CIFAR archives) are hashed on every load (cached per file
size+mtime) and recorded in `source`. With the default ``verify=None`` a mismatch is an error for
the system/cache locations (Debian, Keras' cache), but only a `DatasetWarning` for places the
user pointed at ($CUTPOINT_DATA, `path`): those are meant for subsets and test fixtures.
``verify=True`` makes every mismatch an error, ``verify=False`` skips the comparison (hashes are
still recorded). Files that match *another* dataset's checksums (MNIST loaded as Fashion-MNIST)
are always refused unless ``verify=False``.

Other loaders: `digits` is scikit-learn's 8×8 digits (0..16 scaled to 0..255 by ×255/16, rounded)
with a fixed split: test = a stratified 20 % drawn with seed 0 (`carve_validation(labels,
all rows, 0.2, seed=0)`), train = the rest. `folder` and `npz`: see their docstrings.

Splits and the experiment's views (class halves, limits, label budgets, validation carve) live in
`cutpoint.splits`; the names are re-exported here (`from cutpoint.datasets import prepare`).
"""
from __future__ import annotations

import csv
import difflib
import gzip
import hashlib
import inspect
import os
import pickle
import posixpath
import tarfile
import warnings
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["Dataset", "DatasetError", "DatasetWarning", "load", "available", "register",
           "read_idx", "write_idx", "write_synthetic_idx", "FASHION_MNIST_CLASSES"]


class DatasetError(ValueError):
    """A dataset cannot be found, read or used as asked; the message says how to fix it."""


class DatasetWarning(UserWarning):
    """Something was loaded but deserves attention (unverified files, skipped images …)."""


FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck"]
IDX_FILES = {  # split → (images, labels), the official names
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
KNOWN_SHA256 = {
    "fashion_mnist": {
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    },
    "mnist": {
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
    },
    "cifar10": {
        "cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"},
    "cifar100": {
        "cifar-100-python.tar.gz": "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"},
}
# Debian packages that ship a dataset (tests monkeypatch this to hide the real one).
DEBIAN_DIRS = {"fashion_mnist": [Path("/usr/share/datasets/fashion-mnist")]}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_GRAY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


# ----------------------------------------------------------------------------- the Dataset
class _ArrayStore:
    """uint8 pixels kept as the loader's own arrays ("parts", e.g. train and test), never joined."""

    def __init__(self, parts):
        self.parts = [p if p.ndim == 4 else p[..., None] for p in parts]
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.shape = tuple(self.parts[0].shape[1:])

    def get(self, rows: np.ndarray, size=None, method="bilinear") -> np.ndarray:
        if len(self.parts) == 1:
            out = self.parts[0][rows]
        else:
            out = np.empty((len(rows),) + self.shape, np.uint8)
            part = np.searchsorted(self.offsets, rows, side="right") - 1
            for p in np.unique(part):
                m = part == p
                out[m] = self.parts[p][rows[m] - self.offsets[p]]
        if size is not None and tuple(size) != self.shape[:2]:
            out = np.stack([_resize(im, size, method) for im in out]) if len(out) else \
                np.empty((0, *size, self.shape[2]), np.uint8)
        return out


class _FolderStore:
    """Image files decoded on demand; channels decided once for the whole folder."""

    def __init__(self, paths, sizes, modes, channels):
        self.paths, self.sizes, self.modes, self.channels = paths, sizes, modes, channels

    def get(self, rows: np.ndarray, size=None, method="bilinear") -> np.ndarray:
        hw = {tuple(s) for s in self.sizes[rows]} if len(rows) else set()
        if size is None and len(hw) > 1:
            raise DatasetError(
                f"The requested images have {len(hw)} different sizes (e.g. "
                f"{sorted(hw)[:3]} as (height, width)). Pass size=(height, width) to "
                f"images() to resize them (bilinear).")
        target = tuple(size) if size is not None else (next(iter(hw)) if hw else (0, 0))
        out = np.empty((len(rows), *target, self.channels), np.uint8)
        for i, r in enumerate(rows):
            out[i] = _decode(self.paths[r], self.channels, target, method)
        return out


def convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (n, h, w, c) → (n, h, w, channels): gray → RGB by repetition, RGB → gray by
    luminance with Pillow's integer weights (ITU-R 601-2: .299 R + .587 G + .114 B, rounded),
    so it equals `Image.convert("L")`."""
    c = x.shape[-1]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return np.repeat(x, 3, axis=-1)
    if c == 3 and channels == 1:
        lum = (x[..., 0].astype(np.uint32) * 19595 + x[..., 1].astype(np.uint32) * 38470
               + x[..., 2].astype(np.uint32) * 7471 + 0x8000) >> 16
        return lum.astype(np.uint8)[..., None]
    raise DatasetError(f"Cannot convert {c}-channel images to {channels} channels.")


class _ChannelStore:
    """Another store's images converted to `channels` (see `convert_channels`)."""

    def __init__(self, inner, channels):
        self.inner, self.channels = inner, channels

    def get(self, rows: np.ndarray, size=None, method="bilinear") -> np.ndarray:
        return convert_channels(self.inner.get(rows, size, method), self.channels)


def channels_of(ds) -> int:
    """The channel count of a dataset's images (also for folders of mixed sizes)."""
    if ds.image_shape is not None:
        return int(ds.image_shape[-1])
    return int(getattr(ds._store, "channels", 3))


def with_channels(ds, channels: int):
    """A view of `ds` whose images have `channels` channels (1: luminance, 3: repetition); the
    same dataset when they already do. `source["channels_converted"]` records the conversion."""
    have = channels_of(ds)
    if int(channels) == have:
        return ds
    how = "luminance (ITU-R 601-2)" if channels == 1 else "repeated gray"
    shape = None if ds.image_shape is None else (*ds.image_shape[:2], int(channels))
    return Dataset(ds.name, list(ds.class_names), ds.labels, ds.ids, ds.split,
                   dict(ds.source, channels_converted={"from": have, "to": int(channels),
                                                      "method": how}),
                   shape, list(ds.skipped), list(ds.class_ids),
                   _ChannelStore(ds._store, int(channels)), ds._rows)


@dataclass(eq=False)
class Dataset:
    """Labels, ids, splits and provenance of a dataset (or a view of one); pixels via `images()`.

    `class_ids` are the original dataset's class ids of this view's classes (identity for a
    freshly loaded dataset), so a relabelled view still says which classes it holds.
    """
    name: str
    class_names: list
    labels: np.ndarray
    ids: np.ndarray
    split: np.ndarray
    source: dict
    image_shape: tuple | None
    skipped: list = field(default_factory=list)
    class_ids: list | None = None
    _store: object = field(default=None, repr=False)
    _rows: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.ids = np.asarray(self.ids, dtype=str)
        self.split = np.asarray(self.split, dtype=str)
        self.class_names = [str(c) for c in self.class_names]
        if self.class_ids is None:
            self.class_ids = list(range(len(self.class_names)))
        if self._rows is None:
            self._rows = np.arange(len(self.labels), dtype=np.int64)
        n = len(self.labels)
        if not (len(self.ids) == len(self.split) == len(self._rows) == n):
            raise DatasetError(f"Dataset {self.name!r}: labels, ids, split and rows must have the "
                               f"same length; got {n}, {len(self.ids)}, {len(self.split)}, "
                               f"{len(self._rows)}.")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise DatasetError(f"Dataset {self.name!r}: labels must lie in 0.."
                               f"{len(self.class_names) - 1} (one per class name); got "
                               f"{self.labels.min()}..{self.labels.max()}.")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        splits = {str(s): int(c) for s, c in zip(*np.unique(self.split, return_counts=True))}
        return (f"Dataset({self.name!r}, n={len(self)}, classes={len(self.class_names)}, "
                f"image_shape={self.image_shape}, splits={splits})")

    def _index(self, idx) -> np.ndarray:
        if isinstance(idx, slice):
            return np.arange(len(self), dtype=np.int64)[idx]
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise DatasetError(f"A boolean mask must have length {len(self)}; got {idx.shape}.")
            return np.flatnonzero(idx)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise DatasetError(f"Row indices must be integers; got dtype {idx.dtype}.")
        idx = idx.astype(np.int64).ravel()
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"Row index out of range for a dataset of {len(self)} rows "
                             f"(got {idx.min()}..{idx.max()}).")
        return idx % max(len(self), 1)

    def images(self, idx, size=None, method="bilinear") -> np.ndarray:
        """uint8 (len(idx), H, W, C) in the order given. `size=(h, w)` resizes each image with
        Pillow's equivalent of the tf.image.resize `method` (PIL_FILTERS); required when the
        rows have different sizes (image folders). Same-size data is better resized by the
        extractor, on whole batches in the graph."""
        if size is not None:
            size = (int(size[0]), int(size[1]))
        return self._store.get(self._rows[self._index(idx)], size, method)

    def iter_batches(self, idx=None, batch_size: int = 256, size=None):
        """Yield (row_indices, images) in order, `batch_size` rows at a time: flat memory."""
        idx = np.arange(len(self)) if idx is None else self._index(idx)
        for start in range(0, len(idx), batch_size):
            part = idx[start:start + batch_size]
            yield part, self.images(part, size=size)

    def subset(self, idx, relabel_classes=None) -> "Dataset":
        """A view of some rows (sharing the pixels). `relabel_classes` (class ids of this
        dataset, in the new order) relabels them to 0..len-1; every row must be in one."""
        idx = self._index(idx)
        labels, names, class_ids = self.labels[idx], self.class_names, self.class_ids
        if relabel_classes is not None:
            classes = _check_classes(self, relabel_classes)
            mapping = np.full(len(self.class_names), -1, np.int64)
            mapping[classes] = np.arange(len(classes))
            labels = mapping[labels]
            if (labels < 0).any():
                bad = sorted(set(self.labels[idx][labels < 0].tolist()))
                raise DatasetError(f"subset(): rows with classes {bad} are not in relabel_classes="
                                   f"{classes}. Select those rows out first (class_subset does).")
            names = [self.class_names[c] for c in classes]
            class_ids = [self.class_ids[c] for c in classes]
        return Dataset(self.name, list(names), labels, self.ids[idx], self.split[idx],
                       self.source, self.image_shape, list(self.skipped), list(class_ids),
                       self._store, self._rows[idx])

    def class_counts(self, split: str | None = None) -> np.ndarray:
        labels = self.labels if split is None else self.labels[self.split == split]
        return np.bincount(labels, minlength=len(self.class_names))

    def write_skipped_report(self, path) -> Path:
        """CSV (path, reason) of the files that could not be read; header only when none."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "reason"])
            w.writerows(self.skipped)
        return path


def _check_classes(ds: Dataset, classes) -> list[int]:
    """Validate a list of class ids of `ds` (ints, in range, no repeats)."""
    classes = list(classes)
    k = len(ds.class_names)
    bad = [c for c in classes if isinstance(c, bool) or not isinstance(c, (int, np.integer))
           or not 0 <= c < k]
    if bad:
        names = ", ".join(f"{i}={n}" for i, n in enumerate(ds.class_names[:20]))
        raise DatasetError(f"Unknown class id(s) {bad} for dataset {ds.name!r}: expected integers "
                           f"in 0..{k - 1} ({names}{', …' if k > 20 else ''}).")
    if len(set(classes)) != len(classes):
        raise DatasetError(f"Class ids must not repeat; got {classes}.")
    return [int(c) for c in classes]


def _array_dataset(name, class_names, parts, labels_parts, splits, source) -> Dataset:
    """Assemble a dataset from per-split arrays (kept as separate parts, not concatenated)."""
    store = _ArrayStore(parts)
    ids, split = [], []
    for s, lab in zip(splits, labels_parts):
        width = max(5, len(str(len(lab) - 1)))
        ids += [f"{name}/{s}/{i:0{width}d}" for i in range(len(lab))]
        split += [s] * len(lab)
    labels = np.concatenate([np.asarray(lab).astype(np.int64).ravel() for lab in labels_parts])
    for p, lab in zip(store.parts, labels_parts):
        if len(p) != len(np.ravel(lab)):
            raise DatasetError(f"{name}: {len(p)} images but {len(np.ravel(lab))} labels in one "
                               f"split ({source.get('path', '')}). The files do not belong "
                               f"together.")
    return Dataset(name, list(class_names), labels, np.array(ids), np.array(split), source,
                   store.shape, _store=store)


# ----------------------------------------------------------------------------- image helpers
# backbone.resize_method (tf.image.resize's names) → the Pillow filter used where images must be
# resized one by one while decoding (folders of mixed sizes).
PIL_FILTERS = {"bilinear": "BILINEAR", "nearest": "NEAREST", "bicubic": "BICUBIC", "area": "BOX",
               "lanczos3": "LANCZOS"}


def pil_filter_name(method: str) -> str:
    if method not in PIL_FILTERS:
        raise DatasetError(f"Unknown resize method {method!r}. Expected one of "
                           f"{', '.join(PIL_FILTERS)} (backbone.resize_method).")
    return PIL_FILTERS[method]


def _resize(img: np.ndarray, size, method="bilinear") -> np.ndarray:
    from PIL import Image
    h, w = size
    flt = getattr(Image.Resampling, pil_filter_name(method))
    if img.shape[2] == 1:
        out = Image.fromarray(img[..., 0], "L").resize((w, h), flt)
        return np.asarray(out)[..., None]
    return np.asarray(Image.fromarray(img, "RGB").resize((w, h), flt))


def _to_gray8(im) -> np.ndarray:
    """Grayscale PIL image of any bit depth → uint8 (H, W). 16-bit images are SCALED to 8 bits
    (round(v / 257): 65535 → 255), never clipped; "I" (32-bit int, how some decoders hand out
    16-bit data) is read as 16-bit (values clipped to 0..65535 first); "F" is clipped to 0..255."""
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        return ((a * 255 + 32767) // 65535).astype(np.uint8)
    if im.mode == "F":
        return np.clip(np.rint(np.asarray(im)), 0, 255).astype(np.uint8)
    return np.asarray(im.convert("L"))


MAX_PIXELS = 89_478_485
"""Decompression-bomb limit (Pillow's own default, ≈ 9459 × 9459 px): larger images are skipped
with a reason that names it (an 8000 × 8000 image, 64 Mpx, is decoded). Raise it here
(`cutpoint.datasets.MAX_PIXELS = …`) for legitimately huge images."""


def _open_image(path, draft_to=None):
    """Open, orient (EXIF) and fully decode one file; first frame of animations.

    `draft_to=(w, h)` lets JPEG decode at a reduced scale (libjpeg still reads every byte, so
    truncation is still caught): the folder scan checks files cheaply this way."""
    from PIL import Image, ImageOps
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", message="Palette images with Transparency")
        im = Image.open(path)
    try:
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise DatasetError(f"{w}×{h} = {w * h:,} px is above the decompression-bomb limit "
                               f"(cutpoint.datasets.MAX_PIXELS = {MAX_PIXELS:,} px)")
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)
        if draft_to is not None and im.format == "JPEG":
            im.draft(im.mode, draft_to)
        im.load()
        orientation = im.getexif().get(0x0112, 1)
        if orientation not in (None, 1):
            im = ImageOps.exif_transpose(im)
            if orientation in (5, 6, 7, 8):
                w, h = h, w
        return im, (h, w)
    except BaseException:
        im.close()
        raise


def _decode(path: str, channels: int, size, method="bilinear") -> np.ndarray:
    """Decode one file to uint8 (h, w, channels): EXIF orientation applied, first frame of an
    animation, RGBA/LA/PA drop alpha, palette and CMYK → RGB, 16-bit scaled to 8 bits."""
    try:
        im, _ = _open_image(path)
        with im:
            if channels == 1 or im.mode in ("I", "F") or im.mode.startswith("I;16"):
                arr = _to_gray8(im)
                arr = np.repeat(arr[..., None], channels, axis=2)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    arr = np.asarray(im.convert("RGB"))
    except Exception as e:  # noqa: BLE001 — any decoder failure becomes a clear message
        raise DatasetError(f"Could not decode {path} ({type(e).__name__}: {e}). It was readable "
                           f"when the folder was scanned: it changed since. Re-run to rescan "
                           f"(it will then be skipped and reported).") from e
    if arr.shape[:2] != tuple(size):
        arr = _resize(arr, size, method)
    return arr


def _scan_one(path):
    """(mode, (h, w)) of a fully decoded file, or the reason it cannot be used."""
    try:
        im, hw = _open_image(path, draft_to=(64, 64))
        with im:
            mode = im.mode
            if mode not in _GRAY_MODES and mode not in ("I", "F"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    im.convert("RGB")  # CMYK, YCbCr, palette …: must convert, or it is skipped
        if min(hw) < 1:
            return f"empty image ({hw[1]}×{hw[0]})"
        return mode, hw
    except Exception as e:  # noqa: BLE001 — every unreadable file is reported, never fatal
        return f"{type(e).__name__}: {e}".strip()


def scan_images(paths, workers: int | None = None) -> list:
    """Fully decode every file (in threads: Pillow's decoders release the GIL), in order.

    Returns per file (mode, (h, w)) or a reason string. Why decode at scan time and not just
    `verify()`: a JPEG truncated halfway passes verify and only fails when decoded — at
    extraction, after the split and the store's rows were decided. Decoding here excludes it
    before anything depends on it. Cost: one extra decode per file, in parallel, JPEGs at
    reduced scale (`draft`), i.e. a fraction of the extraction's own decode + forward pass.
    """
    from concurrent.futures import ThreadPoolExecutor
    paths = [str(p) for p in paths]
    if not paths:
        return []
    workers = workers or min(16, 2 * (os.cpu_count() or 2))
    if workers <= 1 or len(paths) < 8:
        return [_scan_one(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_scan_one, paths, chunksize=16))


# ----------------------------------------------------------------------------- files & checksums
@lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path) -> str:
    st = os.stat(path)
    return _sha256_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def _offline() -> bool:
    return os.environ.get("CUTPOINT_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def _keras_roots() -> list[Path]:
    """Where Keras caches downloads: $KERAS_HOME, ~/.keras, and /tmp/.keras (its fallback)."""
    roots = [Path(os.environ["KERAS_HOME"])] if os.environ.get("KERAS_HOME") else []
    return roots + [Path.home() / ".keras", Path("/tmp/.keras")]


def _user_dirs(path, *subdirs) -> list[tuple[str, Path]]:
    """($CUTPOINT_DATA/<sub>…, $CUTPOINT_DATA, path) as (kind, place) candidates."""
    out = []
    env = os.environ.get("CUTPOINT_DATA", "")
    if env:
        out += [("CUTPOINT_DATA", Path(env) / sub) for sub in subdirs]
        out.append(("CUTPOINT_DATA", Path(env)))
    if path:
        out.append(("path", Path(path)))
    return out


def _verify(dataset: str, files: dict, kind: str, verify) -> dict:
    """Compare file hashes with the published ones; returns the provenance record.

    kind: 'CUTPOINT_DATA'/'path' (user-chosen: mismatch warns) or 'debian'/'keras_cache'
    (mismatch is an error). verify=True: always an error; verify=False: no comparison.
    """
    record = {name: {"sha256": sha256_file(p), "bytes": os.path.getsize(p)}
              for name, p in files.items()}
    if verify is False:
        return {"files": record, "verified": None}
    known = KNOWN_SHA256.get(dataset, {})
    for other, table in KNOWN_SHA256.items():
        if other != dataset and any(table.get(n) == r["sha256"] for n, r in record.items()):
            raise DatasetError(
                f"The files in {Path(next(iter(files.values()))).parent} are the official "
                f"{other!r} files, not {dataset!r}. Point CUTPOINT_DATA/path at the right folder, "
                f"or load them with load({other!r}).")
    bad = [n for n, r in record.items() if n in known and known[n] != r["sha256"]]
    unknown = [n for n in record if n not in known]
    if not bad and not unknown:
        return {"files": record, "verified": True}
    where = Path(next(iter(files.values()))).parent
    detail = "; ".join(f"{n}: sha256 {record[n]['sha256'][:16]}…, expected {known[n][:16]}…"
                       for n in bad) or f"no published checksum for {unknown}"
    msg = (f"{dataset}: the files in {where} do not match the published checksums ({detail}). "
           f"They may be damaged or a different version")
    if verify is True or (bad and kind in ("debian", "keras_cache")):
        raise DatasetError(msg + ": delete and reinstall/redownload them, or pass verify=False "
                                 "to load them anyway.")
    warnings.warn(msg + f"; loaded anyway because they come from {kind} (pass verify=True to make "
                        f"this an error, verify=False to silence it).", DatasetWarning,
                  stacklevel=4)
    return {"files": record, "verified": False}


# ----------------------------------------------------------------------------- IDX
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path, expect_ndim: int | None = None) -> np.ndarray:
    """Parse an IDX file (gzip-compressed when the name ends in .gz) into one array.

    Checks the magic number (two zero bytes, a type code, the number of dimensions) and that
    the payload has exactly the announced size; reads straight into the result (one copy).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
                raise DatasetError(
                    f"{path} is not an IDX file: bad magic number {head.hex() or '(empty)'} "
                    f"(expected 0000 08 0N, e.g. 00000803 for images, 00000801 for labels). "
                    f"Replace it with the original download.")
            ndim = head[3]
            if expect_ndim is not None and ndim != expect_ndim:
                raise DatasetError(f"{path}: IDX magic number {head.hex()} announces {ndim} "
                                   f"dimension(s); expected {expect_ndim} (magic 000008"
                                   f"{expect_ndim:02x}). Images and labels may be swapped.")
            dims = np.frombuffer(f.read(4 * ndim), dtype=">u4")
            if len(dims) != ndim:
                raise DatasetError(f"{path}: truncated IDX header.")
            out = np.empty(tuple(int(d) for d in dims), dtype=np.dtype(_IDX_DTYPES[head[2]]))
            view = memoryview(out.reshape(-1).view(np.uint8))
            got = 0
            while got < len(view):  # 1 MiB at a time: gzip's readinto copies via a temporary
                n = f.readinto(view[got:got + (1 << 20)])
                if not n:
                    break
                got += n
            if got != len(view) or f.read(1):
                raise DatasetError(f"{path}: the IDX header announces shape {tuple(dims)} "
                                   f"({len(view)} bytes) but the payload has "
                                   f"{'fewer' if got != len(view) else 'more'} bytes. The file is "
                                   f"truncated or damaged; replace it.")
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"Cannot read {path} ({type(e).__name__}: {e}). The file is damaged "
                           f"or not gzip-compressed; replace it with the original download.") from e
    return out


def write_idx(path, array) -> Path:
    """Write an array as an IDX file (gzip-compressed when `path` ends in .gz)."""
    array = np.asarray(array)
    codes = {np.dtype(v).str.lstrip("|"): k for k, v in _IDX_DTYPES.items()}
    be = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    code = codes[be.dtype.str.lstrip("|")]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + np.ascontiguousarray(be).tobytes())
    return path


def write_synthetic_idx(folder, n_train: int = 200, n_test: int = 50, shape=(28, 28),
                        n_classes: int = 10, seed: int = 0) -> Path:
    """Write the four Fashion-MNIST-named IDX .gz files with tiny class-dependent images
    (a bright bar whose position encodes the class, plus noise): separable fixtures for tests
    of later stages (point CUTPOINT_DATA at `folder`; load with verify=False)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = shape
    for split, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % n_classes
        rng.shuffle(y)
        x = rng.integers(0, 60, size=(n, h, w)).astype(np.uint8)
        for i, c in enumerate(y):
            r0 = int(c * (h - 2) / n_classes)
            x[i, r0:r0 + max(2, h // n_classes), :] = 200 + rng.integers(0, 55)
        write_idx(folder / IDX_FILES[split][0], x)
        write_idx(folder / IDX_FILES[split][1], y.astype(np.uint8))
    return folder


def _idx_files_in(d: Path) -> tuple[dict | None, str]:
    """The four IDX files in `d` (name → path), or None and why not."""
    if not d.is_dir():
        return None, "not a folder" if d.exists() else "does not exist"
    found, missing = {}, []
    for pair in IDX_FILES.values():
        for name in pair:
            for cand in (d / name, d / name[:-3]):
                if cand.is_file():
                    found[name] = cand
                    break
            else:
                missing.append(name)
    if missing:
        return None, f"missing {', '.join(missing)}"
    return found, ""


def _load_idx_dir(dataset, class_names, files, kind, verify) -> Dataset:
    prov = _verify(dataset, {p.name: p for p in files.values()}, kind, verify)
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
    return _array_dataset(dataset, class_names, parts, labels, ["train", "test"], source)


# ----------------------------------------------------------------------------- fashion_mnist, mnist
def _not_found(dataset: str, tried: list[str], how: str) -> DatasetError:
    lines = "\n".join(f"  - {t}" for t in tried)
    return DatasetError(f"{dataset} not found. Looked in:\n{lines}\nTo get it: {how}")


def _keras_download(module: str, tried: list[str]):
    """Run keras.datasets.<module>.load_data() unless offline; None (and why) when not possible."""
    if _offline():
        tried.append("Keras download: skipped because CUTPOINT_OFFLINE is set")
        return None
    try:
        import importlib
        mod = importlib.import_module(f"keras.datasets.{module}")
        return mod.load_data()
    except Exception as e:  # noqa: BLE001 — a failed download is reported with the rest
        tried.append(f"Keras download: failed ({type(e).__name__}: {e})")
        return None


def _fashion_dirs(path) -> list[tuple[str, Path]]:
    return (_user_dirs(path, "fashion-mnist")
            + [("debian", d) for d in DEBIAN_DIRS.get("fashion_mnist", [])]
            + [("keras_cache", r / "datasets" / "fashion-mnist") for r in _keras_roots()])


def register(name: str):
    def deco(fn):
        _LOADERS[name] = fn
        return fn
    return deco


_LOADERS: dict = {}


@register("fashion_mnist")
def load_fashion_mnist(path="", verify=None) -> Dataset:
    """Zalando's Fashion-MNIST: 60000 train + 10000 test 28×28 grayscale, 10 classes."""
    tried = [] if os.environ.get("CUTPOINT_DATA") else ["$CUTPOINT_DATA: not set"]
    for attempt in (0, 1):
        for kind, d in _fashion_dirs(path):
            files, why = _idx_files_in(d)
            if files:
                return _load_idx_dir("fashion_mnist", FASHION_MNIST_CLASSES, files, kind, verify)
            if attempt == 0:
                tried.append(f"{d} ({kind}): {why}")
        if attempt == 0:
            got = _keras_download("fashion_mnist", tried)
            if got is None:
                break
    else:  # downloaded but not found in a cache folder we know: use the arrays as they are
        (xtr, ytr), (xte, yte) = got
        return _array_dataset("fashion_mnist", FASHION_MNIST_CLASSES, [xtr, xte], [ytr, yte],
                              ["train", "test"], {"loader": "keras.datasets.fashion_mnist",
                                                  "location": "download", "verified": None})
    raise _not_found("Fashion-MNIST", tried, (
        "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu: installs the four files in "
        "/usr/share/datasets/fashion-mnist/, offline from then on); or set CUTPOINT_DATA to a "
        "folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (directly or in a fashion-mnist/ "
        "subfolder); or run once with network access and CUTPOINT_OFFLINE unset so that Keras "
        "downloads it to ~/.keras/datasets/fashion-mnist/."))


@register("mnist")
def load_mnist(path="", verify=None) -> Dataset:
    """LeCun's MNIST digits: 60000 train + 10000 test 28×28 grayscale (IDX files or mnist.npz)."""
    names = [str(i) for i in range(10)]
    tried = [] if os.environ.get("CUTPOINT_DATA") else ["$CUTPOINT_DATA: not set"]
    cands = _user_dirs(path, "mnist") + [("keras_cache", r / "datasets") for r in _keras_roots()]
    for attempt in (0, 1):
        for kind, d in cands:
            if d.is_file() and d.suffix == ".npz":
                return _load_npz_arrays("mnist", d, names, kind, verify)
            files, why = _idx_files_in(d)
            if files:
                return _load_idx_dir("mnist", names, files, kind, verify)
            if (d / "mnist.npz").is_file():
                return _load_npz_arrays("mnist", d / "mnist.npz", names, kind, verify)
            if attempt == 0:
                tried.append(f"{d} ({kind}): {why}" + ("; no mnist.npz" if d.is_dir() else ""))
        if attempt == 0 and _keras_download("mnist", tried) is None:
            break
    raise _not_found("MNIST", tried, (
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
    roots = _user_dirs(path)
    cache = [("keras_cache", r / "datasets" / f"{inner}-target") for r in _keras_roots()] + \
            [("keras_cache", r / "datasets") for r in _keras_roots()]
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
        if attempt == 0 and _keras_download(name, tried) is None:
            break
    raise _not_found(name, tried, (
        f"set dataset.path (or CUTPOINT_DATA) to the official python archive {archive} (or its "
        f"extracted {inner}/ folder, or a folder holding either); or run once with network access "
        f"and CUTPOINT_OFFLINE unset so that Keras downloads it to ~/.keras/datasets/."))


def _read_cifar(name, src: Path, kind, verify, label_key, names_key) -> Dataset:
    archive, inner, train_members, test_member, meta, _ = _CIFAR[name]
    wanted = train_members + [test_member, meta]
    # The archive is checked against the official one whatever its file name; extracted
    # folders have no published checksum.
    prov = (_verify(name, {archive: src}, kind, verify) if src.is_file()
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
    store = _ArrayStore(parts)  # train batches and test kept apart: no concatenated copy
    return Dataset(name, class_names, np.concatenate(labels), np.array(ids), np.array(split),
                   source, store.shape, _store=store)


@register("cifar10")
def load_cifar10(path="", verify=None) -> Dataset:
    """CIFAR-10 (50000 train + 10000 test 32×32 RGB, 10 classes) from the python archive."""
    return _load_cifar("cifar10", path, verify)


@register("cifar100")
def load_cifar100(path="", verify=None, label_mode="fine") -> Dataset:
    """CIFAR-100 from the python archive; `label_mode` 'fine' (100 classes) or 'coarse' (20)."""
    if label_mode not in ("fine", "coarse"):
        raise DatasetError(f"label_mode must be 'fine' or 'coarse'; got {label_mode!r}.")
    return _load_cifar("cifar100", path, verify, label_mode)


# ----------------------------------------------------------------------------- digits
DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED = 0.2, 0


@register("digits")
def load_digits(path="") -> Dataset:
    """scikit-learn's 1797 8×8 digits (shipped with sklearn: always offline). Pixel values
    0..16 → 0..255 (×255/16, rounded). Split: stratified 20 % test, seed 0 (fixed)."""
    from sklearn.datasets import load_digits as sk_digits

    from cutpoint.splits import carve_validation
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
    store = _ArrayStore([x])
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
        prov = _verify(name, {path.name: path}, kind, verify)
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
    return _array_dataset(name, class_names, parts, labels, ["train", "test"], source)


@register("npz")
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


# ----------------------------------------------------------------------------- folder
def _listing(root: Path, d: Path) -> list[tuple[str, Path]]:
    """Every non-hidden file under d (recursive, sorted) as (relative posix path, path)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(d):
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            p = Path(dirpath) / fn
            out.append((p.relative_to(root).as_posix(), p))
    return out


def _class_dirs(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


@register("folder")
def load_folder(path="") -> Dataset:
    """An image folder: `path/<class>/<image>` (class names = sorted sub-folder names).

    Split: `path/split.csv` (columns path,split; paths relative to `path`; split train|test),
    else `path/train/<class>/…` + `path/test/<class>/…`, else everything is 'train'. Files that
    cannot be used (fail to DECODE fully — a truncated JPEG passes PIL's verify but not this —,
    wrong extension, above the decompression-bomb limit `MAX_PIXELS`, not in split.csv …) are
    kept out and listed in `dataset.skipped` with the reason (+ a warning with the count;
    `write_skipped_report`). A class folder left without images is dropped with a warning (no
    zero-sample class reaches a stratified split). Channels: 1 if every image is grayscale, else
    3. Modes: 16-bit gray scaled to 8 bits, RGBA/LA drop alpha, palette/CMYK → RGB, EXIF
    orientation applied, animated images give their first frame. Sample ids are
    "folder/<relative path>".
    """
    if not path:
        raise DatasetError("The folder dataset needs dataset.path: a folder with one sub-folder "
                           "per class (path/<class>/<image>).")
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"Image folder {str(root)!r} not found. Set dataset.path to a folder "
                           f"with one sub-folder per class.")
    skipped: list[tuple[str, str]] = []
    split_csv = root / "split.csv"
    entries = []  # (relpath, path, class name, split)
    if (not split_csv.is_file() and (root / "train").is_dir() and (root / "test").is_dir()
            and _class_dirs(root / "train")):
        rule = "train/ and test/ folders"
        classes = sorted(set(_class_dirs(root / "train")) | set(_class_dirs(root / "test")))
        other = [n for n in _class_dirs(root) if n not in ("train", "test")]
        if other:
            warnings.warn(f"{root}: ignoring folder(s) {other}: with train/ and test/ present only "
                          f"those are read (list extra files in split.csv to use them).",
                          DatasetWarning, stacklevel=3)
        for s in ("train", "test"):
            for c in _class_dirs(root / s):
                entries += [(r, p, c, s) for r, p in _listing(root, root / s / c)]
            for f in (root / s).iterdir():
                if f.is_file() and not f.name.startswith("."):
                    skipped.append((f.relative_to(root).as_posix(), "not inside a class folder"))
    else:
        classes = _class_dirs(root)
        listed = None
        if split_csv.is_file():
            rule = "split.csv"
            listed = _read_split_csv(split_csv)
        else:
            rule = "all train (no split.csv, no train/ + test/ folders)"
        for c in classes:
            for r, p in _listing(root, root / c):
                if listed is None:
                    entries.append((r, p, c, "train"))
                elif r in listed:
                    entries.append((r, p, c, listed.pop(r)))
                else:
                    skipped.append((r, "not listed in split.csv"))
        for r in sorted(listed or {}):
            skipped.append((r, "listed in split.csv but not found inside a class folder"))
    if not classes:
        raise DatasetError(f"No class sub-folders in {root}. Expected {root}/<class>/<image> "
                           f"(or train/<class>/… and test/<class>/…).")
    paths, sizes, modes, labels, ids, split = [], [], [], [], [], []
    cls_index = {c: i for i, c in enumerate(classes)}
    images = []
    for rel, p, c, s in entries:
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append((rel, f"not an image extension ({', '.join(sorted(IMAGE_EXTENSIONS))})"))
        else:
            images.append((rel, p, c, s))
    for (rel, p, c, s), got in zip(images, scan_images([p for _, p, _, _ in images])):
        if isinstance(got, str):
            skipped.append((rel, got))
            continue
        mode, hw = got
        paths.append(str(p))
        sizes.append(hw)
        modes.append(mode)
        labels.append(cls_index[c])
        ids.append(f"folder/{rel}")
        split.append(s)
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} file(s) that could not be used (see "
                      f"dataset.skipped or dataset.write_skipped_report(path)); e.g. "
                      f"{skipped[0][0]}: {skipped[0][1]}", DatasetWarning, stacklevel=3)
    if not paths:
        raise DatasetError(f"No readable images in {root} ({len(skipped)} file(s) skipped, e.g. "
                           f"{skipped[:3]}). Expected JPEG/PNG files in {root}/<class>/.")
    used = sorted(set(labels))
    empty = [c for c in classes if cls_index[c] not in used]
    if empty:  # a class without samples would break every stratified split: drop it
        warnings.warn(f"{root}: dropped class folder(s) {empty}: they hold no readable image. "
                      f"Classes (and their ids in dataset.*_classes) are now "
                      f"{[c for c in classes if c not in empty]}.", DatasetWarning, stacklevel=3)
        remap = {old: new for new, old in enumerate(used)}
        labels = [remap[v] for v in labels]
        classes = [c for c in classes if c not in empty]
    channels = 1 if all(m in _GRAY_MODES for m in modes) else 3
    sizes_arr = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    uniform = len({tuple(s) for s in sizes}) == 1
    listing = hashlib.sha256("\n".join(f"{i}\t{os.path.getsize(p)}" for i, p in
                                       zip(ids, paths)).encode()).hexdigest()
    source = {"loader": "folder", "location": "path", "path": str(root.resolve()),
              "split_rule": rule, "n_files": len(paths), "n_skipped": len(skipped),
              "empty_classes_dropped": empty,
              "listing_sha256": listing, "channels": channels,
              "modes": sorted(set(modes)), "verified": None,
              "split_file": ({"path": "split.csv", "sha256": sha256_file(split_csv)}
                             if rule == "split.csv" else None)}
    store = _FolderStore(paths, sizes_arr, modes, channels)
    shape = (*sizes[0], channels) if uniform else None
    return Dataset("folder", classes, np.array(labels, dtype=np.int64), np.array(ids),
                   np.array(split), source, shape, skipped, _store=store)


def load_unlabelled(sources) -> Dataset:
    """New, unlabelled images to predict: a folder (every image file under it, recursively —
    flat or not, sub-folder names are NOT classes) or a list of image files. Decoded and
    checked like `load_folder` (`scan_images`): files that cannot be used are kept out and
    listed in `dataset.skipped` with the reason. Ids are the paths relative to the folder (or
    as given). Labels are all 0 of one class "?", split "test"."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [Path(s) for s in sources]
    skipped, files = [], []
    if len(sources) == 1 and sources[0].is_dir():
        root = sources[0]
        files = [(rel, p) for rel, p in _listing(root, root)]
    else:
        for p in sources:
            if p.is_dir():
                raise DatasetError(f"{p} is a folder: pass one folder, or a list of image files.")
            if not p.is_file():
                skipped.append((str(p), "file not found"))
            else:
                files.append((str(p), p))
    if not files and not skipped:
        raise DatasetError(f"No files in {sources[0]}. Pass a folder of images (JPEG/PNG …) or a "
                           f"list of image files.")
    images = []
    for rel, p in files:
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append((rel, f"not an image extension ({', '.join(sorted(IMAGE_EXTENSIONS))})"))
        else:
            images.append((rel, p))
    paths, sizes, modes, ids = [], [], [], []
    for (rel, p), got in zip(images, scan_images([p for _, p in images])):
        if isinstance(got, str):
            skipped.append((rel, got))
            continue
        paths.append(str(p))
        modes.append(got[0])
        sizes.append(got[1])
        ids.append(rel)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} file(s) that could not be used; e.g. "
                      f"{skipped[0][0]}: {skipped[0][1]}", DatasetWarning, stacklevel=2)
    if not paths:
        raise DatasetError(f"None of the {len(skipped)} file(s) is a readable image (e.g. "
                           f"{skipped[:3]}).")
    channels = 1 if all(m in _GRAY_MODES for m in modes) else 3
    uniform = len(set(sizes)) == 1
    source = {"loader": "unlabelled", "n_files": len(paths), "n_skipped": len(skipped),
              "channels": channels, "modes": sorted(set(modes))}
    store = _FolderStore(paths, np.asarray(sizes, dtype=np.int64).reshape(-1, 2), modes, channels)
    return Dataset("unlabelled", ["?"], np.zeros(len(paths), np.int64), np.array(ids),
                   np.array(["test"] * len(paths)), source,
                   (*sizes[0], channels) if uniform else None, skipped, _store=store)


def _read_split_csv(path: Path) -> dict[str, str]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        if "path" not in cols or "split" not in cols:
            raise DatasetError(f"{path} must have the columns 'path,split'; got {cols}.")
        out = {}
        for i, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            rel = posixpath.normpath(row["path"].replace("\\", "/"))  # "./p\\0.png" → "p/0.png"
            s = row["split"].lower()
            if s not in ("train", "test"):
                raise DatasetError(f"{path} line {i}: split {row['split']!r} for {rel!r}; expected "
                                   f"'train' or 'test'.")
            if rel in out:
                raise DatasetError(f"{path} line {i}: {rel!r} is listed twice.")
            out[rel] = s
    return out


# ----------------------------------------------------------------------------- registry
def available() -> list[str]:
    return sorted(_LOADERS)


def load(name: str, path="", **kw) -> Dataset:
    """Load a registered dataset by name; `path` and keyword options go to its loader."""
    if name not in _LOADERS:
        match = difflib.get_close_matches(str(name), available(), n=1)
        hint = f" Did you mean '{match[0]}'?" if match else ""
        raise DatasetError(f"Unknown dataset {name!r}. Available: {', '.join(available())}.{hint}")
    fn = _LOADERS[name]
    params = inspect.signature(fn).parameters
    unknown = [k for k in kw if k not in params]
    if unknown:
        opts = [p for p in params if p != "path"]
        raise DatasetError(f"Dataset {name!r} does not take the option(s) {unknown}. Its options: "
                           f"{opts or 'none'}.")
    return fn(path=str(path) if path else "", **kw)


_SPLIT_NAMES = {"class_subset", "carve_validation", "label_budget", "stratified_limit",
                "describe_split", "prepare", "order_by_split", "train_val_test"}


def __getattr__(name):  # re-export cutpoint.splits lazily (it imports this module)
    if name in _SPLIT_NAMES:
        from cutpoint import splits
        return getattr(splits, name)
    raise AttributeError(f"module 'cutpoint.datasets' has no attribute {name!r}")
