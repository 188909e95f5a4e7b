"""Extraction with resize vs pre-resized: what resizing inside the compiled forward pass costs.

The same model (random weights) embeds the same images twice, side by side in one process:
stored at the data's native size and resized by `make_forward` (tf.image.resize, bilinear, on
whole batches in the graph), and stored already at the model's input size (Pillow, beforehand).
Both go through the extractor's own path, `image_pipeline` (tf.data, parallel batch loading,
prefetch) → `make_forward` → numpy, without the HDF5 writes (the same for both; see the hdf5
section). Each path has its own compiled function (one input shape each, as in a real run); the
two paths alternate for a few repeats and the best rate of each is kept. Goal (issue 15): the
resizing path at ≥ 0.8 × the pre-resized throughput.
"""
from __future__ import annotations

import time

from benchmarks import flops
from benchmarks.common import doc_method, quiet_tf, synthetic_images, target

GOAL = 0.8


def _dataset(x):
    import numpy as np
    from cutpoint import datasets as cds
    return cds._array_dataset("bench", ["a"], [x], [np.zeros(len(x), np.int64)], ["train"],
                              {"name": "bench"})


def _rate(dataset, forward, batch: int, size) -> float:
    """Images/s of the extractor's pipeline + forward pass over the whole dataset."""
    import numpy as np
    from backbones.inputs import image_pipeline
    t0, n = time.perf_counter(), 0
    for x in image_pipeline(dataset, np.arange(len(dataset)), batch, size=size):
        n += len([o.numpy() for o in forward(x)][0])
    return n / (time.perf_counter() - t0)


def run(sizes: dict, ctx: dict) -> dict:
    quiet_tf()
    import keras
    import numpy as np

    from backbones import registry
    from backbones.cut import cut_model, resolve_cuts
    from backbones.embed import make_forward
    from backbones.inputs import input_shape_for
    from backbones.weights import load_backbone
    from cutpoint import datasets as cds

    peak = ctx.get("peak_gflops")
    rows, targets = [], []
    for cfg in sizes["configs"]:
        name, native, px, ch = cfg["backbone"], cfg["native"], cfg["px"], cfg["channels"]
        n, batch = cfg["n"], cfg["batch"]
        spec = registry.get(name)
        shape = input_shape_for(spec, (native, native, ch), px)
        model, spec, _ = load_backbone(name, weights="none", input_shape=shape)
        pairs = resolve_cuts(model, spec, list(spec.cuts))
        cm = cut_model(model, [layer for _, layer in pairs], pooling="avg")
        h, w, c = (int(d) for d in model.input.shape[1:4])
        mflops = flops.count(cm)["total"] / 1e6
        x_native, _ = synthetic_images(n, native, ch, seed=0)
        x_pre = np.stack([cds._resize(im, (px, px)) for im in x_native])   # Pillow, beforehand
        data = {"resize": _dataset(x_native), "pre-resized": _dataset(x_pre)}
        fwd = {k: make_forward(cm, spec, (h, w, c)) for k in data}
        for k, ds in data.items():   # trace + warm up each path's own compiled function
            _rate(_dataset(ds.images(np.arange(min(n, 2 * batch)))), fwd[k], batch, (h, w))
        best = {k: 0.0 for k in data}
        for _ in range(cfg.get("repeats", sizes["repeats"])):
            for k in data:
                best[k] = max(best[k], _rate(data[k], fwd[k], batch, (h, w)))
        ratio = best["resize"] / best["pre-resized"]
        for k in data:
            gflops = best[k] * mflops / 1e3
            rows.append({"backbone": name, "path": k,
                         "stored": f"{native if k == 'resize' else px}px",
                         "input": f"{h}x{w}x{c}", "batch": batch, "images": n,
                         "images_per_second": best[k], "gflops": gflops,
                         "fraction_of_peak": gflops / peak if peak else None,
                         "ratio_to_pre_resized": best[k] / best["pre-resized"]})
        row = target("resize", f"extraction with resize vs pre-resized: {name} {native}→{px} "
                     "px (throughput ratio)", ratio, GOAL, unit="x")
        row["peak_gflops"] = peak      # the matmul peak of this run, for the record
        targets.append(row)
        del fwd, cm, model
        keras.backend.clear_session()
    return {"method": doc_method(__doc__) + (f" Matmul peak of this run: {peak:.1f} GFLOP/s."
                                             if peak else " The matmul peak was not measured."),
            "rows": rows, "targets": targets}
