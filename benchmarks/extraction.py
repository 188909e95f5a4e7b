"""Extraction throughput of the compiled forward pass, as a fraction of the matmul peak.

Measured through `backbones.embed.make_forward` (the path `make extract` runs: uint8 batch →
cast, channels, preprocessing, ONE model tapping every registry cut point, pooled outputs →
numpy), random weights, random uint8 batches already in memory (data loading and HDF5 writing
are measured by the other sections). Each batch size is warmed up (traced) first; then batches
run until both a minimum image count and a minimum time are reached; best of a few repeats.
"""
from __future__ import annotations

import time

from benchmarks import flops
from benchmarks.common import quiet_tf, target

# Share of the matmul peak the forward pass should reach (the targets).
GOALS = {"small_vgg": 0.85, "resnet50": 0.85, "mobilenet_v2": 0.60}


def build_forward(backbone: str, px: int, channels: int, cuts=None):
    """(forward, cut_model, cut aliases) for a backbone with random weights and every cut point."""
    from backbones.cut import cut_model, resolve_cuts
    from backbones.embed import make_forward
    from backbones.weights import load_backbone

    model, spec, _ = load_backbone(backbone, weights="none", input_shape=(px, px, channels))
    pairs = resolve_cuts(model, spec, list(cuts if cuts is not None else spec.cuts))
    cm = cut_model(model, [layer for _, layer in pairs], pooling="avg")
    forward = make_forward(cm, spec, tuple(int(d) for d in model.input.shape[1:4]))
    return forward, cm, [a for a, _ in pairs]


def time_forward(forward, x, min_images: int, min_seconds: float, repeats: int) -> dict:
    """Best images/s over `repeats` windows of whole batches (outputs copied to numpy)."""
    batch = int(x.shape[0])
    rates, images = [], 0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            _ = [o.numpy() for o in forward(x)]
            n += batch
            elapsed = time.perf_counter() - t0
            if n >= min_images and elapsed >= min_seconds:
                break
        rates.append(n / elapsed)
        images += n
    return {"images_per_second": max(rates), "median_images_per_second":
            sorted(rates)[len(rates) // 2], "images_timed": images}


def run(sizes: dict, ctx: dict) -> dict:
    quiet_tf()
    import keras
    import numpy as np
    import tensorflow as tf

    peak = ctx.get("peak_gflops")
    rows, targets, notes = [], [], []
    for cfg in sizes["configs"]:
        name, px, ch = cfg["backbone"], cfg["px"], cfg["channels"]
        t0 = time.perf_counter()
        forward, cm, aliases = build_forward(name, px, ch)
        fl = flops.count(cm)
        build_s = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        best = None
        for batch in cfg["batches"]:
            x = tf.constant(rng.integers(0, 256, (batch, px, px, ch), dtype=np.uint8))
            t1 = time.perf_counter()
            for _ in range(sizes["warmup_calls"]):
                _ = [o.numpy() for o in forward(x)]
            warm_s = time.perf_counter() - t1
            r = time_forward(forward, x, cfg.get("min_images", sizes["min_images"]),
                             cfg.get("min_seconds", sizes["min_seconds"]),
                             cfg.get("repeats", sizes["repeats"]))
            gflops = r["images_per_second"] * fl["total"] / 1e9
            row = {"backbone": name, "input": f"{px}x{px}x{ch}", "cuts": len(aliases),
                   "batch": batch, "mflops_per_image": fl["total"] / 1e6,
                   "images_per_second": r["images_per_second"],
                   "median_images_per_second": r["median_images_per_second"],
                   "gflops": gflops, "fraction_of_peak": gflops / peak if peak else None,
                   "images_timed": r["images_timed"], "warmup_seconds": warm_s,
                   "build_seconds": build_s}
            rows.append(row)
            if best is None or row["images_per_second"] > best["images_per_second"]:
                best = row
        if name in GOALS and best is not None:
            targets.append(target("extraction", f"{name} {best['input']}: share of matmul peak "
                                  f"(best batch {best['batch']})", best["fraction_of_peak"],
                                  GOALS[name], unit="x peak"))
        del forward, cm
        keras.backend.clear_session()  # free the model before building the next one
    if not peak:
        notes.append("The matmul peak was not measured in this run: fractions of peak are empty.")
    peak_text = f"{peak:.1f} GFLOP/s (section peak)" if peak else "not measured"
    return {"method": "make_forward (tf.function) on in-memory uint8 batches, all registry cut "
                      "points, avg pooling, random weights; FLOPs per image: " + flops.METHOD
                      + f"; peak = {peak_text}",
            "rows": rows, "targets": targets, "notes": notes}
