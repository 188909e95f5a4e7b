"""The `Dataset` view: labels, ids, splits and provenance; pixels on demand via `images()`.

A `Dataset` holds no pixels: a store does. `ArrayStore` keeps a loader's arrays as they are
("parts", e.g. train and test, never concatenated); `FolderStore` decodes image files on demand;
`ChannelStore` converts another store's channels. Views made by `subset` share the store
through an index array.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cutpoint.datasets.errors import DatasetError
from cutpoint.datasets.images import decode_image, resize_image


class ArrayStore:
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
            out = np.stack([resize_image(im, size, method) for im in out]) if len(out) else \
                np.empty((0, *size, self.shape[2]), np.uint8)
        return out


class FolderStore:
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
            out[i] = decode_image(self.paths[r], self.channels, target, method)
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


class ChannelStore:
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
                   ChannelStore(ds._store, int(channels)), ds._rows)


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
            classes = check_classes(self, relabel_classes)
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


def check_classes(ds: Dataset, classes) -> list[int]:
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


def array_dataset(name, class_names, parts, labels_parts, splits, source) -> Dataset:
    """Assemble a dataset from per-split arrays (kept as separate parts, not concatenated)."""
    store = ArrayStore(parts)
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

