"""Provenance: code version, package versions and content hashes carried by every result.

The one home of the small helpers every layer needs: `package_version(name)`, `sha256_file(path)`
(cached per file size and mtime), `hash_file`, `hash_obj`, `hash_arrays`, `stable_json`."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_PACKAGES = ("tensorflow-cpu", "tensorflow", "keras", "numpy", "scikit-learn", "xgboost-cpu",
             "xgboost", "h5py", "umap-learn", "joblib")


@lru_cache(maxsize=1)
def code_version() -> str:
    """`git describe` of the checkout (with -dirty), else the package version."""
    from cutpoint import __version__
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return f"{__version__}+g{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__


def package_version(name: str, default=None):
    """The installed version of distribution `name`, or `default` when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return default


@lru_cache(maxsize=1)
def package_versions() -> dict:
    versions = {name: package_version(name) for name in _PACKAGES}
    return {name: v for name, v in versions.items() if v is not None}


def stable_json(obj) -> str:
    """Canonical JSON (sorted keys, no spaces) so equal configs hash equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def hash_obj(obj, n: int = 16) -> str:
    return hashlib.sha256(stable_json(obj).encode()).hexdigest()[:n]


@lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path) -> str:
    """The full sha256 hex digest of a file, streamed in 1 MiB blocks; cached per (resolved
    path, size, mtime), so a file read again unchanged is not hashed twice."""
    st = os.stat(path)
    return _sha256_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def hash_file(path, n: int = 16) -> str:
    """The first `n` hex digits of `sha256_file(path)`."""
    return sha256_file(path)[:n]


def hash_arrays(*arrays, n: int = 16) -> str:
    """Content hash of numpy arrays (dtype, shape and bytes), streamed in row blocks."""
    import numpy as np
    h = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        flat = a.reshape(len(a), -1) if a.ndim else a.reshape(1)
        for i in range(0, len(flat), 65536):
            h.update(np.ascontiguousarray(flat[i:i + 65536]).tobytes())
    return h.hexdigest()[:n]
