"""Where dataset files are found and how they are checked: published checksums, the places
searched (CUTPOINT_DATA, `path`, Debian, Keras' cache, Keras' download) and the IDX format.

The loaders read the patchable settings through this module (`files.DEBIAN_DIRS`,
`files.keras_roots()`), so a test can hide the machine's real copies.
"""
from __future__ import annotations

import gzip
import os
import warnings
import zlib
from pathlib import Path

import numpy as np

from cutpoint.datasets.errors import DatasetError, DatasetWarning
from cutpoint.provenance import sha256_file

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


# ----------------------------------------------------------------------------- places & checksums
def offline() -> bool:
    return os.environ.get("CUTPOINT_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def keras_roots() -> list[Path]:
    """Where Keras caches downloads: $KERAS_HOME, ~/.keras, and /tmp/.keras (its fallback)."""
    roots = [Path(os.environ["KERAS_HOME"])] if os.environ.get("KERAS_HOME") else []
    return roots + [Path.home() / ".keras", Path("/tmp/.keras")]


def user_dirs(path, *subdirs) -> list[tuple[str, Path]]:
    """($CUTPOINT_DATA/<sub>…, $CUTPOINT_DATA, path) as (kind, place) candidates."""
    out = []
    env = os.environ.get("CUTPOINT_DATA", "")
    if env:
        out += [("CUTPOINT_DATA", Path(env) / sub) for sub in subdirs]
        out.append(("CUTPOINT_DATA", Path(env)))
    if path:
        out.append(("path", Path(path)))
    return out


def verify_files(dataset: str, files: dict, kind: str, verify) -> dict:
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


def idx_files_in(d: Path) -> tuple[dict | None, str]:
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


# ----------------------------------------------------------------------------- not found
def not_found(dataset: str, tried: list[str], how: str) -> DatasetError:
    lines = "\n".join(f"  - {t}" for t in tried)
    return DatasetError(f"{dataset} not found. Looked in:\n{lines}\nTo get it: {how}")


def keras_download(module: str, tried: list[str]):
    """Run keras.datasets.<module>.load_data() unless offline; None (and why) when not possible."""
    if offline():
        tried.append("Keras download: skipped because CUTPOINT_OFFLINE is set")
        return None
    try:
        import importlib
        mod = importlib.import_module(f"keras.datasets.{module}")
        return mod.load_data()
    except Exception as e:  # noqa: BLE001 — a failed download is reported with the rest
        tried.append(f"Keras download: failed ({type(e).__name__}: {e})")
        return None

