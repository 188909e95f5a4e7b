"""Provenance: code version, package versions and content hashes carried by every result."""
from __future__ import annotations

import hashlib
import json
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


@lru_cache(maxsize=1)
def package_versions() -> dict:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def stable_json(obj) -> str:
    """Canonical JSON (sorted keys, no spaces) so equal configs hash equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def hash_obj(obj, n: int = 16) -> str:
    return hashlib.sha256(stable_json(obj).encode()).hexdigest()[:n]


def hash_file(path, n: int = 16, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()[:n]


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
