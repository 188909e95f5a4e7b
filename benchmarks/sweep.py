"""The one-pass k-cut extraction stage against the loop a user writes by hand.

One pass: `extract.extractor.extract(cfg, run_dir)` on an .npz dataset, exactly as `make extract`
runs it (dataset loading, model building, tf.data, the compiled forward pass tapping k cut
points, HDF5 store with provenance), timed from call to return.
Naive: load the same backbone, preprocess the whole array, then for each cut point
`keras.Model(base.input, base.get_layer(name).output)` + `model.predict(x)` (Keras' default
batch size 32) over the whole array, average-pool with numpy and `np.save` — the notebook way.
Both start from the .npz on disk; both include building the models. Ratio = naive / one pass.
Goal (the issue's): the one pass at least 0.85 x k times faster.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import doc_method, npz_config, quiet_tf, target, write_npz

GOAL_PER_CUT = 0.85


def naive(npz_path, backbone: str, px: int, channels: int, aliases, out_dir) -> dict:
    """The per-cut predict loop; returns total seconds and seconds per cut."""
    import keras
    import numpy as np

    from backbones.cut import resolve_cuts
    from backbones.inputs import prepare_inputs
    from backbones.weights import load_backbone

    t0 = time.perf_counter()
    with np.load(npz_path) as f:
        x = np.concatenate([f["x_train"], f["x_test"]])
    if x.ndim == 3:
        x = x[..., None]
    base, spec, _ = load_backbone(backbone, weights="none", input_shape=(px, px, channels))
    x = np.asarray(prepare_inputs(x, spec, (px, px, channels)))
    per_cut = {}
    for alias, layer in resolve_cuts(base, spec, list(aliases)):
        t1 = time.perf_counter()
        model = keras.Model(base.input, base.get_layer(layer).output)
        feats = model.predict(x, verbose=0)
        if feats.ndim == 4:
            feats = feats.mean(axis=(1, 2))
        np.save(Path(out_dir) / f"{alias}.npy", feats)
        per_cut[alias] = time.perf_counter() - t1
    return {"seconds": time.perf_counter() - t0, "per_cut": per_cut}


def one_pass(npz_path, backbone: str, px: int, aliases, run_dir) -> dict:
    from extract.extractor import extract
    cuts = "[" + ", ".join(f'"{a}"' for a in aliases) + "]"
    cfg = npz_config(npz_path, backbone, px, f"extract.cuts={cuts}")
    t0 = time.perf_counter()
    summary = extract(cfg, run_dir)
    return {"seconds": time.perf_counter() - t0, "stage_seconds": summary.get("seconds"),
            "cuts": list(summary["cuts"])}


def run(sizes: dict, ctx: dict) -> dict:
    quiet_tf()
    import keras

    from backbones import registry

    rows, targets = [], []
    work = Path(tempfile.mkdtemp(prefix="cutpoint-bench-sweep-"))
    try:
        for cfg in sizes["configs"]:
            name, px, ch, n = cfg["backbone"], cfg["px"], cfg["channels"], cfg["n"]
            npz = work / f"{name}_{px}.npz"
            write_npz(npz, n, px, ch)
            all_cuts = list(registry.get(name).cuts)
            # Warm-up: TF kernels, Keras and tf.data start-up are paid once, not by the first.
            one_pass(npz, name, px, all_cuts[:1], work / "warmup")
            for k_label, aliases in (("1", all_cuts[-1:]), ("all", all_cuts)):
                best_naive = best_one = None
                for rep in range(sizes["repeats"]):
                    out = work / f"naive_{name}_{k_label}_{rep}"
                    out.mkdir()
                    r = naive(npz, name, px, ch, aliases, out)
                    if best_naive is None or r["seconds"] < best_naive["seconds"]:
                        best_naive = r
                    keras.backend.clear_session()
                    r = one_pass(npz, name, px, aliases, work / f"one_{name}_{k_label}_{rep}")
                    if best_one is None or r["seconds"] < best_one["seconds"]:
                        best_one = r
                    keras.backend.clear_session()
                k = len(aliases)
                ratio = best_naive["seconds"] / best_one["seconds"]
                rows.append({"backbone": name, "input": f"{px}x{px}x{ch}", "images": n,
                             "k": k, "cuts": ",".join(aliases),
                             "naive_seconds": best_naive["seconds"],
                             "one_pass_seconds": best_one["seconds"],
                             "one_pass_forward_write_seconds": best_one["stage_seconds"],
                             "speedup": ratio, "goal_speedup": GOAL_PER_CUT * k,
                             "naive_seconds_per_cut": {a: round(s, 3) for a, s in
                                                       best_naive["per_cut"].items()}})
                targets.append(target("sweep", f"{name} {px}px, k={k}: one pass vs naive loop",
                                      ratio, GOAL_PER_CUT * k, unit="x faster"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"method": doc_method(__doc__),
            "rows": rows, "targets": targets,
            "notes": [f"Best of {sizes['repeats']} repeat(s) of each, after one untimed warm-up "
                      "extraction; random weights; synthetic images stored at the input size "
                      "(no resize)."]}
