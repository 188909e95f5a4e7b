"""Depthwise backbones: MobileNetV2 extraction at 96 px under TensorFlow/oneDNN settings.

Each variant runs the extractor's compiled forward pass (`make_forward`, every registry cut
point, avg pooling, random weights, random uint8 batches in memory) in a FRESH Python process,
because oneDNN's environment variables are read when TensorFlow loads: TF's default (TF turns
its oneDNN custom ops on only on some CPUs; the row says which it chose, from TF's own startup
message); oneDNN forced on / off (TF_ENABLE_ONEDNN_OPTS=1 / 0); oneDNN with explicit thread pools
(intra-op = the usable CPUs, inter-op 1); oneDNN's implicit bfloat16 for float32 ops
(ONEDNN_DEFAULT_FPMATH_MODE=BF16: fast only on AVX-512-BF16 / AMX CPUs); and
`extract.precision = bfloat16` (Keras mixed_bfloat16). Throughput is the best of a
few timed windows after a warm-up, and the best of the rounds (every variant once per round);
the share is of the float32 matmul peak measured in this run
(for the bfloat16 variants an effective share). Each variant's embeddings of one fixed batch are
compared with the default's (relative Frobenius error over all cuts): a faster path only counts
if its numbers stay close. Goal (issue 15): ≥ 0.5 of the peak.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from benchmarks.common import ROOT, doc_method, target

GOAL = 0.5
# (label, environment, options of the child)
ON = {"TF_ENABLE_ONEDNN_OPTS": "1"}
VARIANTS = [
    ("TF default", {}, {}),
    ("oneDNN on: TF_ENABLE_ONEDNN_OPTS=1", ON, {}),
    ("oneDNN off: TF_ENABLE_ONEDNN_OPTS=0", {"TF_ENABLE_ONEDNN_OPTS": "0"}, {}),
    ("oneDNN on, threads: intra-op = usable CPUs, inter-op 1", ON, {"threads": True}),
    ("oneDNN on, implicit bf16: ONEDNN_DEFAULT_FPMATH_MODE=BF16",
     {**ON, "ONEDNN_DEFAULT_FPMATH_MODE": "BF16"}, {}),
    ("extract.precision = bfloat16 (Keras mixed_bfloat16)", {}, {"precision": "bfloat16"}),
]


def child(args: dict) -> dict:
    """One variant, in this (fresh) process: build, warm up, time; save one batch's outputs."""
    import numpy as np
    import tensorflow as tf
    if args.get("threads"):
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    from benchmarks import flops
    from benchmarks.extraction import time_forward
    from backbones.cut import cut_model, resolve_cuts
    from backbones.embed import make_forward
    from backbones.weights import load_backbone, with_precision

    keras.utils.set_random_seed(0)
    px, batch = args["px"], args["batch"]
    model, spec, _ = load_backbone("mobilenet_v2", weights="none", input_shape=(px, px, 3))
    pairs = resolve_cuts(model, spec, list(spec.cuts))
    cm = cut_model(model, [layer for _, layer in pairs], pooling="avg")
    mflops = flops.count(cm)["total"] / 1e6
    cm = with_precision(cm, args.get("precision", "float32"))
    forward = make_forward(cm, spec, (px, px, 3))
    x = tf.constant(np.random.default_rng(0).integers(0, 256, (batch, px, px, 3), np.uint8))
    for _ in range(2):
        outs = [o.numpy() for o in forward(x)]
    np.savez(args["out"], *outs)
    r = time_forward(forward, x, args["min_images"], args["min_seconds"], args["repeats"])
    return {"images_per_second": r["images_per_second"], "mflops_per_image": mflops,
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}


def run(sizes: dict, ctx: dict) -> dict:
    import numpy as np

    peak = ctx.get("peak_gflops")
    rows, notes = [], []
    chosen = list(sizes.get("variants", range(len(VARIANTS))))
    got, ref = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        # Rounds over all variants, not one variant after another: the other jobs' load then
        # falls on every variant alike, and each keeps its best round.
        for _ in range(sizes.get("rounds", 1)):
            for i in chosen:
                label, env, opts = VARIANTS[i]
                out = os.path.join(tmp, f"v{i}.npz")
                args = {"px": sizes["px"], "batch": sizes["batch"], "out": out,
                        "min_images": sizes["min_images"], "min_seconds": sizes["min_seconds"],
                        "repeats": sizes["repeats"], **opts}
                proc = subprocess.run(
                    [sys.executable, "-m", "benchmarks.depthwise", json.dumps(args)], cwd=ROOT,
                    # log level 0: TF says on stderr whether its oneDNN custom ops are on
                    env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "0",
                         **env}, capture_output=True, text=True,
                    timeout=sizes.get("timeout_s", 900))
                if proc.returncode != 0:
                    notes.append(f"{label}: failed ({proc.stderr.strip().splitlines()[-1:]})")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                r["onednn"] = "on" if "oneDNN custom operations are on" in proc.stderr else "off"
                r["rates"] = got.get(i, {}).get("rates", []) + [r["images_per_second"]]
                if i not in got:
                    with np.load(out) as z:
                        outs = [z[k] for k in sorted(z.files, key=lambda k: int(k.split("_")[1]))]
                    ref = ref if ref is not None else outs
                    r["err"] = float(np.sqrt(
                        sum(np.sum((a.astype(np.float64) - b) ** 2) for a, b in zip(outs, ref))
                        / sum(np.sum(b.astype(np.float64) ** 2) for b in ref)))
                else:
                    r["err"] = got[i]["err"]
                got[i] = r
    for i in chosen:
        if i not in got:
            continue
        r = got[i]
        rate = max(r["rates"])
        gflops = rate * r["mflops_per_image"] / 1e3
        rows.append({"variant": VARIANTS[i][0], "onednn": r["onednn"], "images_per_second": rate,
                     "rounds": [round(v, 1) for v in r["rates"]], "gflops": gflops,
                     "fraction_of_peak": gflops / peak if peak else None,
                     "embedding_rel_error_vs_default": r["err"],
                     "intra_op": r["intra_op"], "inter_op": r["inter_op"]})
    best = max(rows, key=lambda r: r["images_per_second"]) if rows else None
    targets = []
    if best:
        t = target("depthwise", f"mobilenet_v2 {sizes['px']}x{sizes['px']}x3: share of matmul "
                   "peak, best TF setting tried", best["fraction_of_peak"], GOAL, unit="x peak")
        t.update(peak_gflops=peak, variant=best["variant"])
        targets.append(t)
    notes.append("ONNX Runtime was not tried here (not a dependency of the project).")
    return {"method": doc_method(__doc__) + (f" Matmul peak of this run: {peak:.1f} GFLOP/s."
                                             if peak else " The matmul peak was not measured."),
            "rows": rows, "targets": targets, "notes": notes}


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]))))
