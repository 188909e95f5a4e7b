"""Datasets behind one interface: `load(name, path)` → `Dataset`.

A `Dataset` is labels (int64, 0..K-1), class names, stable string sample ids
(``"fashion_mnist/train/00042"``), the dataset's own split per sample ('train'/'test') and a
provenance record (`source`: loader, location, files and their sha256). Pixels are not attributes:
`images(idx)` returns uint8 (n, H, W, C) for the requested rows only, so extraction can stream
batches. Array datasets keep each file's array once (several "parts", never concatenated);
views made by `subset` share them through an index array; image folders are scanned by fully
decoding every file in parallel threads (`scan_images`: damaged files are skipped and reported
before any split is decided) and decoded again lazily in `images()`.

Loaders (`available()`): cifar10, cifar100, digits, fashion_mnist, folder, mnist, npz.

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

The package, one concern per module (each imports only the ones above it):
  errors     DatasetError, DatasetWarning
  images     decoding, resizing and scanning image files (Pillow), MAX_PIXELS
  view       the Dataset view and its pixel stores, channel conversion
  files      where files are looked for, published checksums, the IDX format
  sampling   seeded stratified row draws on a label array (`carve_validation` …)
  arrays     the loaders of array datasets (fashion_mnist, mnist, cifar10/100, digits, npz)
  folder     the image-folder loaders (folder, and `load_unlabelled` for prediction)
  registry   load / available / register
Splits and the experiment's views (class halves, limits, label budgets, validation carve,
`prepare(cfg)`) live in `cutpoint.splits`, which imports this package (never the reverse).
"""
from __future__ import annotations

import sys
import types

from cutpoint.datasets import files, images
from cutpoint.datasets.arrays import CIFAR10_CLASSES, FASHION_MNIST_CLASSES
from cutpoint.datasets.errors import DatasetError, DatasetWarning
from cutpoint.datasets.files import IDX_FILES, KNOWN_SHA256, read_idx, write_idx
from cutpoint.datasets.folder import load_unlabelled
from cutpoint.datasets.images import IMAGE_EXTENSIONS, PIL_FILTERS, pil_filter_name, scan_images
from cutpoint.datasets.registry import available, load, register
from cutpoint.datasets.view import (Dataset, array_dataset, channels_of, check_classes,
                                    convert_channels, with_channels)
from cutpoint.provenance import sha256_file

__all__ = ["Dataset", "DatasetError", "DatasetWarning", "load", "available", "register",
           "read_idx", "write_idx", "FASHION_MNIST_CLASSES", "CIFAR10_CLASSES",
           "load_unlabelled", "convert_channels", "channels_of", "with_channels",
           "pil_filter_name", "scan_images", "sha256_file", "check_classes", "array_dataset",
           "IDX_FILES", "KNOWN_SHA256", "IMAGE_EXTENSIONS", "PIL_FILTERS"]

# Names older callers (benchmarks/resize.py) still use.
_array_dataset = array_dataset
_resize = images.resize_image


class _Package(types.ModuleType):
    """`cutpoint.datasets.MAX_PIXELS = …` and `cutpoint.datasets.DEBIAN_DIRS = …` (documented
    knobs; tests set DEBIAN_DIRS to hide the machine's copy) read and set the value in the
    module that uses it (`images`, `files`)."""

    MAX_PIXELS = property(lambda self: images.MAX_PIXELS,
                          lambda self, v: setattr(images, "MAX_PIXELS", v))
    DEBIAN_DIRS = property(lambda self: files.DEBIAN_DIRS,
                           lambda self, v: setattr(files, "DEBIAN_DIRS", v))


sys.modules[__name__].__class__ = _Package
