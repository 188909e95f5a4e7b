"""Helpers shared by the sections: the machine's description, targets, synthetic data."""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict:
    """CPU model, cores, memory and the package versions the numbers depend on."""
    info = {"cpu_model": "unknown", "logical_cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln.split(":", 1) for ln in text.splitlines() if ":" in ln]
        fields = {}
        for k, v in lines:
            fields.setdefault(k.strip(), v.strip())
        info["cpu_model"] = fields.get("model name", "unknown")
        info["physical_cores_per_socket"] = int(fields["cpu cores"]) if "cpu cores" in fields \
            else None
        flags = set(fields.get("flags", "").split())
        info["simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                                    "amx_tile") if f in flags]
    except OSError:
        pass
    try:
        mem = Path("/proc/meminfo").read_text().split("\n")[0].split()
        info["memory_gb"] = round(int(mem[1]) / 1024 ** 2, 1)
    except (OSError, IndexError, ValueError):
        pass
    info["versions"] = versions()
    return info


def versions() -> dict:
    from cutpoint.provenance import package_version
    out = {}
    for label, dist in (("tensorflow", "tensorflow-cpu"), ("tensorflow", "tensorflow"),
                        ("keras", "keras"), ("scikit-learn", "scikit-learn"),
                        ("xgboost", "xgboost-cpu"), ("xgboost", "xgboost"), ("h5py", "h5py"),
                        ("numpy", "numpy")):
        if label not in out and package_version(dist) is not None:
            out[label] = package_version(dist)
    try:
        import h5py
        out["hdf5"] = h5py.version.hdf5_version
    except ImportError:
        pass
    return out


def target(section: str, what: str, value, goal: float, higher_is_better: bool = True,
           unit: str = "") -> dict:
    """One target row: met, or missed by X % (relative to the goal)."""
    if value is None or not np.isfinite(value):
        return {"section": section, "what": what, "goal": goal, "value": None, "met": False,
                "verdict": "not measured", "higher_is_better": higher_is_better, "unit": unit}
    met = value >= goal if higher_is_better else value <= goal
    miss = (goal - value) / goal if higher_is_better else (value - goal) / goal
    verdict = "met" if met else f"missed by {100 * miss:.0f} %"
    return {"section": section, "what": what, "goal": goal, "value": float(value), "met": bool(met),
            "verdict": verdict, "higher_is_better": higher_is_better, "unit": unit}


def synthetic_images(n: int, px: int, channels: int, n_classes: int = 10, seed: int = 0):
    """uint8 images with a class-dependent bright patch on noise (a CNN sees structure)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    x = rng.integers(0, 80, (n, px, px, channels), dtype=np.uint8)
    side = max(1, px // 4)
    for c in range(n_classes):
        r, q = divmod(c % 16, 4)
        rows = y == c
        x[rows, r * side:(r + 1) * side, q * side:(q + 1) * side] += 150
    return x, y.astype(np.int64)


def write_npz(path, n: int, px: int, channels: int, seed: int = 0, test_fraction: float = 0.2):
    """An .npz dataset (x_train, y_train, x_test, y_test) as `dataset.name=npz` reads it."""
    x, y = synthetic_images(n, px, channels, seed=seed)
    n_test = max(1, int(round(n * test_fraction)))
    x_tr, y_tr, x_te, y_te = x[n_test:], y[n_test:], x[:n_test], y[:n_test]
    if channels == 1:  # (N, H, W): how grayscale datasets are usually saved
        x_tr, x_te = x_tr[..., 0], x_te[..., 0]
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    return {"path": str(path), "rows": n, "bytes": int(x.nbytes + y.nbytes)}


def npz_config(npz_path, backbone: str, px: int, *sets):
    """The resolved config of an extraction of an .npz dataset with random weights."""
    from cutpoint import config
    return config.load(None, [
        "dataset.name=npz", f"dataset.path={npz_path}", "dataset.source_classes=[]",
        "dataset.target_classes=[]", f"backbone.name={backbone}", "backbone.weights=none",
        f"backbone.input_size={int(px)}", "extract.pixels=false", *sets])


def quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def doc_method(doc: str) -> str:
    """A module docstring minus its title line, as one paragraph (the section's 'Method')."""
    return " ".join(doc.split("\n", 1)[1].split())
