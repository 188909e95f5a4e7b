"""The image-folder loaders: `load_folder` (one sub-folder per class, with a split rule) and
`load_unlabelled` (new images to predict). Both decode every file once while scanning
(`images.scan_images`): files that cannot be used are kept out and listed with the reason.
"""
from __future__ import annotations

import csv
import hashlib
import os
import posixpath
import warnings
from pathlib import Path

import numpy as np

from cutpoint.datasets.errors import DatasetError, DatasetWarning
from cutpoint.datasets.images import GRAY_MODES, IMAGE_EXTENSIONS, scan_images
from cutpoint.datasets.view import Dataset, FolderStore
from cutpoint.provenance import sha256_file


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
    channels = 1 if all(m in GRAY_MODES for m in modes) else 3
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
    store = FolderStore(paths, sizes_arr, modes, channels)
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
    channels = 1 if all(m in GRAY_MODES for m in modes) else 3
    uniform = len(set(sizes)) == 1
    source = {"loader": "unlabelled", "n_files": len(paths), "n_skipped": len(skipped),
              "channels": channels, "modes": sorted(set(modes))}
    store = FolderStore(paths, np.asarray(sizes, dtype=np.int64).reshape(-1, 2), modes, channels)
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

