"""HDF5 store write/read speed and file size per dtype (float32/float16) x compression.

The matrices are real embeddings: every cut point of the default experiment's store
(`runs/default/embeddings.h5`) when it exists, else the small CNN (random weights) applied to
synthetic images; they are tiled by rows up to the target size so the timing is not dominated by
file creation. Writes go through `embeddings.store` (`create` + `write_rows` per chunk, what
extraction does) to the page cache, no fsync; MB/s are float32 input megabytes per second.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, doc_method, quiet_tf, synthetic_images

DEFAULT_STORE = ROOT / "runs" / "default" / "embeddings.h5"


def embeddings(sizes: dict) -> tuple[dict, str]:
    """{cut: float32 (n, width)} and a sentence saying where they come from."""
    from embeddings import store
    n = sizes["n_images"]
    if DEFAULT_STORE.exists():
        try:
            mats = {c: store.read(DEFAULT_STORE, c, rows=slice(0, n))[0]
                    for c in store.cuts(DEFAULT_STORE)}
            return mats, f"the first {n} rows of every cut of {DEFAULT_STORE.relative_to(ROOT)}"
        except (ValueError, OSError):
            pass
    quiet_tf()
    from benchmarks.extraction import build_forward
    name, px, ch = sizes["backbone"], sizes["px"], sizes["channels"]
    forward, _, aliases = build_forward(name, px, ch)
    x, _ = synthetic_images(n, px, ch)
    outs = [[o.numpy() for o in forward(x[i:i + 256])] for i in range(0, n, 256)]
    mats = {a: np.concatenate([o[j] for o in outs]).astype(np.float32)
            for j, a in enumerate(aliases)}
    return mats, (f"{name} (random weights) at {px}x{px}x{ch}, every cut point, avg pooling, on "
                  f"{n} synthetic images ({DEFAULT_STORE.relative_to(ROOT)} not found)")


def _tile(mats: dict, target_mb: float) -> dict:
    row_bytes = sum(m.shape[1] * 4 for m in mats.values())
    n = len(next(iter(mats.values())))
    reps = max(1, int(np.ceil(target_mb * 2 ** 20 / (row_bytes * n))))
    return {c: np.tile(m, (reps, 1)) for c, m in mats.items()}


def write_once(path, mats, dtype, compression, chunk_rows) -> dict:
    from embeddings import store
    n = len(next(iter(mats.values())))
    cuts = {c: {"width": int(m.shape[1]), "layer": c, "pooling": "avg"} for c, m in mats.items()}
    t0 = time.perf_counter()
    store.create(path, ids=[f"s{i}" for i in range(n)], labels=np.zeros(n, np.int64),
                 splits=["train"] * n, class_names=["c0"], cuts=cuts,
                 provenance={"benchmark": "hdf5"}, dtype=dtype, compression=compression,
                 chunk_rows=chunk_rows)
    t1 = time.perf_counter()
    for s in range(0, n, chunk_rows):
        store.write_rows(path, s, {c: m[s:s + chunk_rows] for c, m in mats.items()})
    t2 = time.perf_counter()
    for c in mats:
        store.read(path, c)
    t3 = time.perf_counter()
    return {"create_seconds": t1 - t0, "write_seconds": t2 - t1, "read_seconds": t3 - t2,
            "file_bytes": os.path.getsize(path)}


def run(sizes: dict, ctx: dict) -> dict:
    mats, source = embeddings(sizes)
    mats = _tile(mats, sizes["target_mb"])
    raw_mb = sum(m.nbytes for m in mats.values()) / 2 ** 20
    n = len(next(iter(mats.values())))
    rows = []
    with tempfile.TemporaryDirectory(prefix="cutpoint-bench-h5-") as tmp:
        for dtype in ("float32", "float16"):
            for comp in ("none", "lzf", "gzip"):
                path = Path(tmp) / f"{dtype}_{comp}.h5"
                r = write_once(path, mats, dtype, comp, sizes["chunk_rows"])
                rows.append({"dtype": dtype, "compression": comp, "rows": n,
                             "input_mb": raw_mb, "write_mb_per_s": raw_mb / r["write_seconds"],
                             "read_mb_per_s": raw_mb / r["read_seconds"],
                             "file_mb": r["file_bytes"] / 2 ** 20,
                             "size_vs_float32_raw": r["file_bytes"] / (raw_mb * 2 ** 20),
                             "write_seconds": r["write_seconds"],
                             "create_seconds": r["create_seconds"]})
                path.unlink()
    widths = {c: int(m.shape[1]) for c, m in mats.items()}
    return {"method": doc_method(__doc__), "rows": rows,
            "notes": [f"Embeddings: {source}; cuts and widths {widths}; tiled to {n} rows "
                      f"({raw_mb:.0f} MB as float32); chunk_rows {sizes['chunk_rows']}. "
                      "read_mb_per_s: store.read of every cut back into float32 (page cache)."]}
