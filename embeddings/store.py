"""The HDF5 embedding store: the one module that calls h5py. This docstring is the format spec.

Format ``cutpoint-embeddings``, version 1
=========================================
One HDF5 file holds, for one dataset, the pooled embeddings of every sample at several cut points
of one backbone. Every public function takes a PATH and opens the file for the duration of the
call only (``with h5py.File``): h5py objects cannot be pickled into Dask tasks, and a notebook must
not keep a file locked.

Root attributes
    ``format``          "cutpoint-embeddings" (readers refuse any other HDF5 file)
    ``format_version``  1 (readers refuse other versions: re-extract, or upgrade cutpoint)
    ``created``         ISO 8601 UTC time of creation
    ``provenance``      JSON string (sorted keys): backbone, weights source and hash, input size,
                        resize method, preprocessing, dataset and split definition, seed, package
                        versions, code version, config hash … Kept small (< 32 KB; the HDF5 object
                        header limit is 64 KB): big lists go in datasets. A shard of a distributed
                        run keeps its own details (row range, worker) under the key ``"shard"``,
                        which `join_shards` drops.
    ``samples_hash``    sha256[:16] of ids, labels and splits, in row order: a fingerprint of the
                        sample list for readers and tools (a resuming writer checks the
                        extraction key instead, see "Writing and resuming").
    ``dtype``, ``compression``, ``chunk_rows``  the storage options given to `create`.

``/samples`` (one row per sample, rows aligned with every cut matrix)
    ``id``            variable-length UTF-8 strings (read back with ``.asstr()``); unique
    ``label``         int64, an index into ``/classes/names``
    ``split``         int8 code, an index into ``split_names``
    ``split_names``   UTF-8 strings, in row order: each split is ONE contiguous row range
    ``split_offsets`` int64 (n_splits + 1,): split i is rows [offsets[i], offsets[i+1]), so
                      reading a split is a slice, never fancy indexing. Every name of the
                      writer's ``split_order`` is listed, possibly with an empty range.
``/classes/names``    UTF-8 strings; ``label == i`` means class ``names[i]``.

``/cuts/<name>`` (group in creation order = cut order, shallow to deep)
    float32 or float16 matrix (n_samples, width), chunked by rows (chunk = (min(chunk_rows, n),
    width)), compression none | lzf | gzip. Uncompressed matrices are allocated in full at
    creation, so writing rows later changes no HDF5 metadata but ``rows_done``.
    Attributes: ``layer`` (Keras layer name), ``pooling``, ``width``, ``rows_done`` and any extra
    scalar/string attributes given to `create`; extra lists/dicts are stored as JSON strings and
    named in ``_json_attrs``.

``/umap/<cut>/<split>``  float32 (n_split, 2) coordinates of that split's rows, in row order;
    attribute ``params``: the UMAP parameters as a JSON string. Written by the report stage.

Writing and resuming
--------------------
`create` writes the whole skeleton (samples, classes, preallocated matrices with rows_done = 0)
to ``<path>.partial`` and renames it to ``<path>`` only when finished, so a crash during creation
leaves no file that looks valid (``*.partial`` files are refused). `write_rows` then streams
row blocks in order: it writes rows [start, start+k) of EVERY cut, flushes, and only then sets
``rows_done = start + k`` on every cut and flushes again. It refuses a block whose start is not
the current ``rows_done`` (a gap or an overlap). A crash between the two flushes leaves
``rows_done`` at the old value, so the resumed writer, starting at `rows_done(path)`, rewrites the
same rows with the same values: the result is exactly the uninterrupted one. Before resuming,
the extraction (`extract.plan`) checks that the provenance carries the same ``extraction_key``,
which hashes the rows (content hash, split definition and order) with everything else that
decides the numbers, so it fills the same samples in the same order. Readers refuse an
incomplete store (``rows_done < n``) unless asked for the written part explicitly. A file that a
crash left unreadable is refused with "cannot be opened …; delete it" — never a silently short or
duplicated matrix.
"""
from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from cutpoint.registry import did_you_mean

FORMAT_NAME = "cutpoint-embeddings"
FORMAT_VERSION = 1
DTYPES = ("float32", "float16")
COMPRESSIONS = ("none", "lzf", "gzip")
PARTIAL_SUFFIX = ".partial"
_RESERVED_CUT_ATTRS = ("layer", "pooling", "width", "rows_done", "_json_attrs")
_MAX_ATTR_BYTES = 32 * 1024
_STR = h5py.string_dtype("utf-8")


class StoreError(ValueError):
    """A store that is missing, foreign, of another version, incomplete, or misused."""


# ----------------------------------------------------------------------------- opening

def _open(path, mode="r") -> h5py.File:
    """Open a store after checking it is one of ours, of our version, and not half-created."""
    path = str(path)
    if path.endswith(PARTIAL_SUFFIX):
        raise StoreError(f"{path!r} is a half-created store (creation was interrupted). Delete it "
                         "and re-run extraction, which starts over.")
    if not os.path.exists(path):
        hint = (f" A half-created {path + PARTIAL_SUFFIX!r} exists: creation was interrupted; "
                "delete it and re-run extraction." if os.path.exists(path + PARTIAL_SUFFIX)
                else " Create it with `make extract`.")
        raise StoreError(f"Embedding store {path!r} does not exist.{hint}")
    if not os.path.isfile(path):
        raise StoreError(f"{path!r} is not a file; expected an embedding store (.h5).")
    if os.path.getsize(path) == 0 or not h5py.is_hdf5(path):
        with open(path, "rb") as fh:
            head = fh.read(8)
        raise StoreError(f"{path!r} is not an HDF5 file (it starts with {head!r}, an HDF5 file "
                         "starts with b'\\x89HDF\\r\\n\\x1a\\n'). Expected a cutpoint embedding "
                         "store written by `make extract`; check the path.")
    try:
        f = h5py.File(path, mode)
    except OSError as e:
        if "unable to lock file" in str(e).lower():
            raise StoreError(f"{path!r} is locked by another process (an extraction still "
                             f"running?): {e}. Wait for it to finish, then retry.") from e
        raise StoreError(f"{path!r} cannot be opened ({e}): probably truncated by a crash; "
                         "delete it and re-run extraction, which starts over.") from e
    try:
        _check_format(f, path)
    except BaseException:
        f.close()
        raise
    return f


def _check_format(f: h5py.File, path: str) -> None:
    fmt = _attr_str(f.attrs.get("format"))
    if fmt != FORMAT_NAME:
        raise StoreError(f"{path!r} is an HDF5 file but not a cutpoint embedding store: its "
                         f"'format' attribute is {fmt!r}, expected {FORMAT_NAME!r}. Point to the "
                         "embeddings.h5 written by `make extract`, or re-extract.")
    version = f.attrs.get("format_version")
    try:
        version = int(version)
    except (TypeError, ValueError):
        version = _attr_str(version)
    if version != FORMAT_VERSION:
        fix = ("upgrade cutpoint to read it, or re-extract with this version"
               if isinstance(version, int) and version > FORMAT_VERSION
               else "re-extract it with `make extract` (delete the file first)")
        raise StoreError(f"{path!r} has format version {version!r}; this code reads version "
                         f"{FORMAT_VERSION}. To fix: {fix}.")


def _attr_str(value):
    return value.decode() if isinstance(value, bytes) else value


# ----------------------------------------------------------------------------- creating

def create(path, *, ids, labels, splits, class_names, cuts: dict, provenance: dict,
           dtype="float32", compression="none", chunk_rows=4096,
           split_order=("train", "val", "test"), overwrite=False) -> None:
    """Create an empty store (rows_done = 0) for the given samples and cut points.

    ``ids``/``labels``/``splits`` are per-sample, in the order rows will be written: each split
    contiguous, in ``split_order`` (use `split_order_index` to sort). ``cuts`` maps a cut name to
    ``{"width": int, "layer": str, "pooling": str, **extra_attrs}``.
    """
    path = str(path)
    if os.path.exists(path) and not overwrite:
        raise StoreError(f"{path!r} already exists. Resume it with write_rows from "
                         "rows_done(path), delete it, or pass overwrite=True.")
    tmp = path + PARTIAL_SUFFIX
    try:
        _create_file(tmp, ids=ids, labels=labels, splits=splits, class_names=class_names,
                     cuts=cuts, provenance=provenance, dtype=dtype, compression=compression,
                     chunk_rows=chunk_rows, split_order=split_order)
    except BaseException:
        _remove(tmp)
        raise
    os.replace(tmp, path)


def _remove(path) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _create_file(path, *, ids, labels, splits, class_names, cuts, provenance, dtype, compression,
                 chunk_rows, split_order) -> None:
    ids = [str(i) for i in ids]
    n = len(ids)
    labels = np.asarray(labels)
    class_names = [str(c) for c in class_names]
    splits = [str(s) for s in splits]
    if labels.shape != (n,) or len(splits) != n:
        raise StoreError(f"ids, labels and splits must have one entry per sample; got {n} ids, "
                         f"labels of shape {labels.shape} and {len(splits)} splits.")
    if n and not np.issubdtype(labels.dtype, np.integer):
        raise StoreError(f"labels must be integers (class indices); got dtype {labels.dtype}. "
                         "Encode them as indices into class_names.")
    labels = labels.astype(np.int64)
    if n and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise StoreError(f"labels must be indices into class_names (0..{len(class_names) - 1}); "
                         f"got values from {labels.min()} to {labels.max()}.")
    if len(set(ids)) != n:
        seen, dups = set(), []
        for i in ids:
            if i in seen and len(dups) < 5:
                dups.append(i)
            seen.add(i)
        raise StoreError(f"sample ids must be unique; duplicated: {dups}.")
    names, offsets = _split_layout(splits, split_order)
    try:
        dtype = np.dtype(dtype).name
    except TypeError:
        pass
    dtype = _check_choice("dtype", dtype, DTYPES)
    compression = _check_choice("compression", compression or "none", COMPRESSIONS)
    if not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise StoreError(f"chunk_rows must be a positive integer; got {chunk_rows!r}.")
    if not cuts:
        raise StoreError("cuts is empty: give at least one cut point "
                         "({name: {'width': …, 'layer': …, 'pooling': …}}).")
    prov = _json(provenance, "provenance")
    codes = np.empty(n, dtype=np.int8)
    for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:])):
        codes[a:b] = i

    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        f.attrs["provenance"] = prov
        f.attrs["samples_hash"] = samples_hash(ids, labels, splits)
        f.attrs["dtype"] = dtype
        f.attrs["compression"] = compression
        f.attrs["chunk_rows"] = int(chunk_rows)
        s = f.create_group("samples")
        s.create_dataset("id", data=ids, dtype=_STR)
        s.create_dataset("label", data=labels, dtype=np.int64)
        s.create_dataset("split", data=codes, dtype=np.int8)
        s.create_dataset("split_names", data=names, dtype=_STR)
        s.create_dataset("split_offsets", data=np.asarray(offsets, dtype=np.int64))
        f.create_group("classes").create_dataset("names", data=class_names, dtype=_STR)
        g = f.create_group("cuts", track_order=True)
        for name, spec in cuts.items():
            _create_cut(g, name, spec, n, dtype, compression, int(chunk_rows))
        f.create_group("umap", track_order=True)


def _create_cut(group, name, spec, n, dtype, compression, chunk_rows):
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise StoreError(f"cut names must be non-empty strings without '/'; got {name!r}.")
    spec = dict(spec)
    missing = [k for k in ("width", "layer", "pooling") if k not in spec]
    if missing:
        raise StoreError(f"cut {name!r} is missing {missing}; each cut needs "
                         "{'width': int, 'layer': str, 'pooling': str}.")
    width = spec.pop("width")
    if not isinstance(width, (int, np.integer)) or width < 1:
        raise StoreError(f"cut {name!r}: width must be a positive integer; got {width!r}.")
    kw = {}
    if n:
        kw["chunks"] = (min(chunk_rows, n), int(width))
        if compression != "none":
            kw["compression"] = compression
        else:   # allocate now: later row writes then touch no HDF5 metadata (crash safety)
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            kw["dcpl"] = dcpl
            kw["fill_time"] = "never"
    ds = group.create_dataset(name, shape=(n, int(width)), dtype=dtype, **kw)
    ds.attrs["layer"] = str(spec.pop("layer"))
    ds.attrs["pooling"] = str(spec.pop("pooling"))
    ds.attrs["width"] = int(width)
    ds.attrs["rows_done"] = 0
    json_keys = []
    for key, value in spec.items():
        if key in _RESERVED_CUT_ATTRS:
            raise StoreError(f"cut {name!r}: attribute {key!r} is reserved.")
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, (str, bool, int, float)):
            ds.attrs[key] = value
        else:
            ds.attrs[key] = _json(value, f"cut {name!r} attribute {key!r}")
            json_keys.append(key)
    if json_keys:
        ds.attrs["_json_attrs"] = _json(json_keys, "_json_attrs")


def _split_layout(splits, split_order):
    """Split names in row order and their offsets; refuse non-contiguous or mis-ordered splits."""
    runs = []
    for i, s in enumerate(splits):
        if not runs or runs[-1][0] != s:
            runs.append([s, i, i + 1])
        else:
            runs[-1][2] = i + 1
    seen = [r[0] for r in runs]
    if len(set(seen)) != len(seen):
        raise StoreError(f"each split must be one contiguous block of rows; got the sequence "
                         f"{seen[:12]}. Reorder the samples with "
                         "embeddings.store.split_order_index(splits, split_order).")
    order = list(dict.fromkeys(str(s) for s in split_order))
    expected = [s for s in order if s in seen] + [s for s in seen if s not in order]
    if seen != expected:
        raise StoreError(f"splits must come in the order {expected} (split_order={order}); got "
                         f"{seen}. Reorder the samples with "
                         "embeddings.store.split_order_index(splits, split_order).")
    bounds = {s: (a, b) for s, a, b in runs}
    names, offsets, pos = [], [0], 0
    for s in order + [s for s in seen if s not in order]:
        a, b = bounds.get(s, (pos, pos))
        names.append(s)
        offsets.append(b)
        pos = b
    return names, offsets


def split_order_index(splits, split_order=("train", "val", "test")) -> np.ndarray:
    """Stable permutation that puts rows in ``split_order`` (other splits after, by appearance)."""
    splits = [str(s) for s in splits]
    rank = {s: i for i, s in enumerate(dict.fromkeys(
        [str(s) for s in split_order] + list(dict.fromkeys(splits))))}
    return np.argsort(np.array([rank[s] for s in splits], dtype=np.int64), kind="stable")


def samples_hash(ids, labels, splits) -> str:
    h = hashlib.sha256()
    for i in ids:
        h.update(str(i).encode("utf-8") + b"\0")
    h.update(np.asarray(labels, dtype="<i8").tobytes())
    for s in splits:
        h.update(str(s).encode("utf-8") + b"\0")
    return h.hexdigest()[:16]


def _check_choice(what, value, options):
    if value not in options:
        raise StoreError(f"{what} must be one of {list(options)}; got {value!r}."
                         f"{did_you_mean(value, options)}")
    return value


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _json(obj, what) -> str:
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError) as e:
        raise StoreError(f"{what} must be JSON-serialisable: {e}.") from e
    if len(text.encode()) > _MAX_ATTR_BYTES:
        raise StoreError(f"{what} is {len(text.encode())} bytes as JSON; attributes must stay "
                         f"under {_MAX_ATTR_BYTES} (HDF5 header limit 64 KB). Put big lists in "
                         "datasets, or summarise them by a hash.")
    return text


# ----------------------------------------------------------------------------- writing

def write_rows(path, start: int, arrays: dict, *, check_finite=True) -> int:
    """Write rows [start, start+k) of every cut, then advance rows_done; returns the new value."""
    with _open(path, "r+") as f:
        return _write_block(f, str(path), int(start), arrays, check_finite)


def _write_block(f, path, start, arrays, check_finite) -> int:
    g = f["cuts"]
    names = list(g)
    given = list(arrays)
    missing = [c for c in names if c not in arrays]
    unknown = [c for c in given if c not in g]
    if unknown:
        raise StoreError(f"unknown cut(s) {unknown} for {path!r}; the store has {names}."
                         f"{did_you_mean(unknown[0], names)}")
    if missing:
        raise StoreError(f"write_rows must write every cut at once; missing {missing} "
                         f"(the store has {names}).")
    done = min(int(g[c].attrs["rows_done"]) for c in names)
    if start != done:
        what = "a gap" if start > done else "an overlap"
        raise StoreError(f"write_rows start={start} but {path!r} has rows_done={done}: writing "
                         f"there would leave {what}. Resume from rows_done(path).")
    n = g[names[0]].shape[0]
    blocks, k = {}, None
    for c in names:
        ds = g[c]
        a = np.asarray(arrays[c])
        if a.ndim != 2 or a.shape[1] != ds.shape[1]:
            raise StoreError(f"cut {c!r}: expected an array of shape (rows, {ds.shape[1]}); got "
                             f"{a.shape}.")
        if k is None:
            k = a.shape[0]
        elif a.shape[0] != k:
            counts = {x: np.shape(arrays[x])[0] for x in names}
            raise StoreError(f"every cut must get the same number of rows; got {counts}.")
        if check_finite:
            _check_finite(c, a, ds.dtype, start)
        blocks[c] = a.astype(ds.dtype, copy=False)
    if start + k > n:
        raise StoreError(f"rows [{start}, {start + k}) exceed the store's {n} samples.")
    if k == 0:
        return done
    for c in names:                       # 1) the data …
        g[c][start:start + k] = blocks[c]
    f.flush()
    _mark_rows_done(f, names, start + k)  # 2) … and only then the progress marker.
    f.flush()
    return start + k


def _mark_rows_done(f, names, value) -> None:
    for c in names:
        f["cuts"][c].attrs["rows_done"] = value


def _check_finite(cut, a, dtype, start):
    if not np.issubdtype(a.dtype, np.number):
        raise StoreError(f"cut {cut!r}: expected numbers; got dtype {a.dtype}.")
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise StoreError(f"cut {cut!r}: row {start + int(np.argmax(bad))} has NaN or inf values. "
                         "Check the backbone's input range/preprocessing, or pass "
                         "check_finite=False to store them anyway.")
    if a.size and np.dtype(dtype) == np.float16:
        peak = float(np.abs(a).max())
        if peak > float(np.finfo(np.float16).max):
            raise StoreError(f"cut {cut!r}: values up to {peak:.4g} overflow float16 (max "
                             "65504). Extract with dtype float32.")


# ----------------------------------------------------------------------------- reading

def rows_done(path) -> int:
    """Rows written to every cut (the minimum over cuts): where a resumed writer starts."""
    with _open(path) as f:
        return _rows_done(f)


def _rows_done(f) -> int:
    return min(int(f["cuts"][c].attrs["rows_done"]) for c in f["cuts"])


def is_complete(path) -> bool:
    with _open(path) as f:
        return _rows_done(f) == f["samples/label"].shape[0]


def _split_bounds(f) -> dict:
    names = f["samples/split_names"].asstr()[()]
    off = f["samples/split_offsets"][()]
    return {str(s): (int(off[i]), int(off[i + 1])) for i, s in enumerate(names)}


def _row_range(f, path, split, rows):
    """(start, stop) of the requested split and/or row slice (rows are relative to the split)."""
    n = f["samples/label"].shape[0]
    lo, hi = 0, n
    if split is not None:
        bounds = _split_bounds(f)
        if split not in bounds:
            raise StoreError(f"unknown split {split!r} in {path!r}; available: {list(bounds)}."
                             f"{did_you_mean(split, bounds)}")
        lo, hi = bounds[split]
    if rows is not None:
        if isinstance(rows, range):
            rows = slice(rows.start, rows.stop, rows.step)
        elif isinstance(rows, tuple) and len(rows) == 2:
            rows = slice(*rows)
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise StoreError(f"rows must be a contiguous slice, range or (start, stop); got "
                             f"{rows!r}.")
        a, b, _ = rows.indices(hi - lo)
        lo, hi = lo + a, lo + max(a, b)
    return lo, hi


def read(path, cut, split=None, rows=None, dtype=np.float32, *, allow_partial=False):
    """(X, y, ids) of one cut, optionally one split and/or a row slice, reading only those rows.

    ``rows`` is a contiguous ``slice``/``range``/``(start, stop)``, relative to ``split`` when
    one is given. An incomplete store is refused; with ``allow_partial=True`` only the rows
    already written are returned. ``dtype=None`` keeps the stored dtype.
    """
    path = str(path)
    with _open(path) as f:
        names = list(f["cuts"])
        if cut not in names:
            raise StoreError(f"cut {cut!r} is not in {path!r}; available cuts: {names}."
                             f"{did_you_mean(cut, names)} To add it, extract it with "
                             f"`make extract CUTS={cut}`.")
        lo, hi = _row_range(f, path, split, rows)
        ds = f["cuts"][cut]
        done = int(ds.attrs["rows_done"])
        if done < ds.shape[0]:
            if not allow_partial:
                raise StoreError(f"{path!r} is incomplete: cut {cut!r} has {done} of "
                                 f"{ds.shape[0]} rows written. Resume the extraction (`make "
                                 "extract`), or pass allow_partial=True to read the written rows.")
            hi = max(lo, min(hi, done))
        X = ds[lo:hi]  # numpy converts float16 ~10x faster than h5py's astype() view
        if dtype is not None and X.dtype != np.dtype(dtype):
            X = X.astype(dtype)
        y = f["samples/label"][lo:hi]
        ids = f["samples/id"].asstr()[lo:hi]
    return X, y, np.asarray(ids, dtype=object)


def iter_chunks(path, cut, split=None, rows=None, chunk_rows=None, dtype=np.float32):
    """Yield ``(X, y, ids)`` blocks of at most `chunk_rows` rows (default: the store's
    ``chunk_rows``) of one cut, in row order, for `split` and/or the contiguous `rows`
    (relative to the split). Each block is one `read` (the file is open only during it), so a
    caller holding one block at a time reads a matrix of any size in bounded memory, and the
    generator can live in a Dask task: only the path travels."""
    path = str(path)
    with _open(path) as f:
        lo, hi = _row_range(f, path, split, rows)
        base = _split_bounds(f)[split][0] if split is not None else 0
        step = int(chunk_rows or f.attrs.get("chunk_rows", 4096))
    if step < 1:
        raise StoreError(f"chunk_rows must be a positive integer; got {chunk_rows!r}.")
    for a in range(lo, hi, step):
        yield read(path, cut, split, rows=(a - base, min(hi, a + step) - base), dtype=dtype)


def read_samples(path, split=None) -> dict:
    """{"ids", "labels", "splits"} (split name per row) for all rows or one split."""
    with _open(path) as f:
        lo, hi = _row_range(f, str(path), split, None)
        names = np.asarray(f["samples/split_names"].asstr()[()], dtype=object)
        return {"ids": np.asarray(f["samples/id"].asstr()[lo:hi], dtype=object),
                "labels": f["samples/label"][lo:hi],
                "splits": names[f["samples/split"][lo:hi].astype(np.int64)]}


def labels(path, split=None) -> np.ndarray:
    """The int64 labels of all rows or one split (no ids: cheap for millions of rows)."""
    with _open(path) as f:
        lo, hi = _row_range(f, str(path), split, None)
        return f["samples/label"][lo:hi]


def class_names(path) -> list:
    with _open(path) as f:
        return [str(s) for s in f["classes/names"].asstr()[()]]


def cuts(path) -> dict:
    """{cut name: attrs} in cut order, with dtype, compression, n_rows and complete added."""
    with _open(path) as f:
        return {c: _cut_attrs(f["cuts"][c]) for c in f["cuts"]}


def _cut_attrs(ds) -> dict:
    json_keys = json.loads(_attr_str(ds.attrs.get("_json_attrs", "[]")))
    out = {}
    for k, v in ds.attrs.items():
        if k == "_json_attrs":
            continue
        v = _attr_str(v)
        if k in json_keys:
            v = json.loads(v)
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    out.update(dtype=ds.dtype.name, compression=ds.compression or "none", n_rows=ds.shape[0],
               complete=out["rows_done"] == ds.shape[0])
    return out


def splits(path) -> dict:
    """{split name: (start, stop)}: each split is the contiguous row range [start, stop)."""
    with _open(path) as f:
        return _split_bounds(f)


def provenance(path) -> dict:
    with _open(path) as f:
        return json.loads(_attr_str(f.attrs["provenance"]))


def root_attrs(path) -> dict:
    """format, format_version, created, samples_hash, dtype, compression, chunk_rows."""
    with _open(path) as f:
        out = {k: _attr_str(v) for k, v in f.attrs.items() if k != "provenance"}
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in out.items()}


# ----------------------------------------------------------------------------- UMAP

def write_umap(path, cut, split, coords, params: dict) -> None:
    """Store (n_split, 2) UMAP coordinates of one split's rows at one cut (replaces old ones)."""
    path = str(path)
    coords = np.asarray(coords, dtype=np.float32)
    text = _json(params, "UMAP params")
    with _open(path, "r+") as f:
        names = list(f["cuts"])
        if cut not in names:
            raise StoreError(f"cut {cut!r} is not in {path!r}; available cuts: {names}."
                             f"{did_you_mean(cut, names)}")
        lo, hi = _row_range(f, path, split, None)
        if coords.shape != (hi - lo, 2):
            raise StoreError(f"UMAP coordinates of split {split!r} must have shape "
                             f"({hi - lo}, 2), one row per sample; got {coords.shape}.")
        g = f["umap"].require_group(cut)
        if split in g:
            del g[split]
        ds = g.create_dataset(split, data=coords)
        ds.attrs["params"] = text


def read_umap(path, cut, split):
    """(coords, params) written by `write_umap`."""
    path = str(path)
    with _open(path) as f:
        have = [f"{c}/{s}" for c in f["umap"] for s in f["umap"][c]]
        key = f"{cut}/{split}"
        if key not in have:
            raise StoreError(f"no UMAP for cut {cut!r}, split {split!r} in {path!r}; stored: "
                             f"{have or 'none'}. Compute it with `make umap`.")
        ds = f["umap"][cut][split]
        return ds[()], json.loads(_attr_str(ds.attrs["params"]))


# ----------------------------------------------------------------------------- info

def info(path) -> str:
    """Human-readable description of a store (what `python -m embeddings info` prints)."""
    path = str(path)
    size = os.path.getsize(path)
    with _open(path) as f:
        n = f["samples/label"].shape[0]
        bounds = _split_bounds(f)
        classes = [str(s) for s in f["classes/names"].asstr()[()]]
        cut_attrs = {c: _cut_attrs(f["cuts"][c]) for c in f["cuts"]}
        umaps = [f"{c}/{s}" for c in f["umap"] for s in f["umap"][c]]
        prov = json.loads(_attr_str(f.attrs["provenance"]))
        created = _attr_str(f.attrs.get("created"))
    split_txt = ", ".join(f"{s} {b - a}" for s, (a, b) in bounds.items())
    lines = [f"{path}: {FORMAT_NAME} v{FORMAT_VERSION}, created {created}, "
             f"{_human_bytes(size)} on disk",
             f"samples: {n} ({split_txt})",
             f"classes ({len(classes)}): {', '.join(classes)}",
             f"cuts ({len(cut_attrs)}):"]
    for c, a in cut_attrs.items():
        state = "complete" if a["complete"] else f"INCOMPLETE {a['rows_done']}/{a['n_rows']} rows"
        lines.append(f"  {c}: width {a['width']}, {a['dtype']}, layer {a['layer']!r}, pooling "
                     f"{a['pooling']}, compression {a['compression']}, rows_done "
                     f"{a['rows_done']}, {state}")
    if umaps:
        lines.append(f"umap: {', '.join(umaps)}")
    lines.append("provenance:")
    for k, v in prov.items():
        text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
        lines.append(f"  {k}: {text if len(text) <= 100 else text[:97] + '...'}")
    return "\n".join(lines)


def _human_bytes(size) -> str:
    if size < 1024:
        return f"{size} B"
    for unit in ("KB", "MB", "GB", "TB"):
        size /= 1024
        if size < 1024 or unit == "TB":
            return f"{size:.1f} {unit}"


# ----------------------------------------------------------------------------- shards

def join_shards(shard_paths, out_path, *, overwrite=False) -> None:
    """Concatenate complete shards (same cuts, classes, compatible provenance) into one store.

    Rows are taken split by split, and within a split shard by shard in the given order, so each
    split stays contiguous; when shards are consecutive pieces of the sample order, that is their
    plain concatenation. Matrices are copied in blocks of ``chunk_rows`` rows. Provenance must be
    equal except for the per-shard key ``"shard"``.
    """
    shard_paths = [str(p) for p in shard_paths]
    out_path = str(out_path)
    if not shard_paths:
        raise StoreError("join_shards needs at least one shard path; got none.")
    if os.path.exists(out_path) and not overwrite:
        raise StoreError(f"{out_path!r} already exists; delete it or pass overwrite=True.")
    if out_path in shard_paths:
        raise StoreError(f"the output {out_path!r} is also one of the shards.")
    metas = [_shard_meta(p) for p in shard_paths]
    first = metas[0]
    for p, m in zip(shard_paths[1:], metas[1:]):
        for key in ("classes", "cuts", "dtype"):
            if m[key] != first[key]:
                raise StoreError(f"shard {p!r} does not match {shard_paths[0]!r}: its {key} are "
                                 f"{m[key]}, expected {first[key]}. Join only shards of one run.")
        if m["provenance"] != first["provenance"]:
            diff = sorted(k for k in set(m["provenance"]) | set(first["provenance"])
                          if m["provenance"].get(k) != first["provenance"].get(k))
            raise StoreError(f"shard {p!r} has a different provenance from {shard_paths[0]!r} "
                             f"(keys {diff} differ). Join only shards of one run; per-shard "
                             "details belong under provenance['shard'].")
    split_order = list(dict.fromkeys(s for m in metas for s in m["splits"]))
    pieces = [(i, *m["splits"][s]) for s in split_order for i, m in enumerate(metas)
              if s in m["splits"] and m["splits"][s][1] > m["splits"][s][0]]
    ids, labels, split_rows = [], [], []
    for i, a, b in pieces:
        smp = read_samples(shard_paths[i])
        ids.extend(smp["ids"][a:b])
        labels.append(smp["labels"][a:b])
        split_rows.extend(smp["splits"][a:b])
    prov = dict(first["provenance"], joined_shards=len(shard_paths))
    cut_specs = {c: {k: v for k, v in a.items()
                     if k not in ("rows_done", "dtype", "compression", "n_rows", "complete")}
                 for c, a in first["cuts"].items()}
    tmp = out_path + PARTIAL_SUFFIX
    try:
        _create_file(tmp, ids=ids, labels=np.concatenate(labels) if labels else np.zeros(0, int),
                     splits=split_rows, class_names=first["classes"], cuts=cut_specs,
                     provenance=prov, dtype=first["dtype"], compression=first["compression"],
                     chunk_rows=first["chunk_rows"], split_order=split_order)
        block = first["chunk_rows"]
        with h5py.File(tmp, "r+") as out:
            pos = 0
            for i, a, b in pieces:
                with _open(shard_paths[i]) as src:
                    for lo in range(a, b, block):
                        hi = min(b, lo + block)
                        arrays = {c: src["cuts"][c][lo:hi] for c in cut_specs}
                        pos = _write_block(out, tmp, pos, arrays, check_finite=False)
    except BaseException:
        _remove(tmp)
        raise
    os.replace(tmp, out_path)


def _shard_meta(path) -> dict:
    with _open(path) as f:
        n = f["samples/label"].shape[0]
        done = _rows_done(f)
        if done != n:
            raise StoreError(f"shard {path!r} is incomplete ({done} of {n} rows written); "
                             "finish or re-run that shard before joining.")
        prov = json.loads(_attr_str(f.attrs["provenance"]))
        prov.pop("shard", None)
        cut_attrs = {c: _cut_attrs(f["cuts"][c]) for c in f["cuts"]}
        return {"classes": [str(s) for s in f["classes/names"].asstr()[()]],
                "cuts": {c: {k: v for k, v in a.items()
                             if k not in ("rows_done", "n_rows", "complete")}
                         for c, a in cut_attrs.items()},
                "dtype": str(_attr_str(f.attrs["dtype"])),
                "compression": str(_attr_str(f.attrs["compression"])),
                "chunk_rows": int(f.attrs["chunk_rows"]),
                "provenance": prov,
                "splits": _split_bounds(f)}
