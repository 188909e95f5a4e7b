"""Planning an extraction and writing its rows: one path for every registry entry.

`plan` decides everything once — rows and their order, cut points, widths, input, the extraction
key and provenance — for a network (one forward pass that taps every cut point, so the layers
below the deepest cut are computed once, not once per cut) or for the raw-pixel baseline (kind
"pixels": the images themselves). `run_rows` then streams a range of the plan's rows into a store,
created, resumed from its last committed chunk, or skipped when complete. Both the single process
(`extract.extractor`) and every Dask worker (`extract.distributed`) run exactly this.

The key is a content hash of everything that decides the numbers (dataset rows, backbone and
weights, input size, cuts, pooling, dtype): a store with the same key is resumed or skipped; a
different key moves the old store aside (never deletes it) and starts a new one.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from backbones import pixels, registry
from backbones.cut import cut_model, cut_widths, resolve_cuts
from backbones.embed import make_forward
from backbones.inputs import (apply_channels, check_channels, check_range, image_pipeline,
                              input_shape_for, prepare_inputs, resize_note)
from backbones.weights import load_backbone, with_precision
from cutpoint import datasets as cds
from cutpoint.provenance import code_version, hash_obj, package_versions
from cutpoint.splits import SPLIT_ORDER, order_by_split
from embeddings import store

log = logging.getLogger("cutpoint.extract")


def extraction_key(parts: dict) -> str:
    return hash_obj(parts)


def _prepare_store(path: Path, key: str, create_kwargs: dict) -> int:
    """Open or create the store for `key`; returns the row to resume from (n = nothing to do)."""
    if path.exists():
        try:
            prov = store.provenance(path)
        except store.StoreError as e:
            moved = path.with_name(f"{path.stem}.unreadable-{int(time.time())}{path.suffix}")
            path.rename(moved)
            log.warning("%s; moved it to %s and starting over.", e, moved)
            prov = None
        if prov is not None:
            if prov.get("extraction_key") == key:
                done = store.rows_done(path)
                return done
            old = path.with_name(f"{path.stem}.{prov.get('extraction_key', 'old')}{path.suffix}")
            path.rename(old)
            log.warning("Settings changed since %s was written; kept the old store as %s.", path, old)
    partial = Path(str(path) + ".partial")
    if partial.exists():
        partial.unlink()  # a crash inside create(): nothing was committed yet
    store.create(path, **create_kwargs)
    return 0


def write_store(path, names, batches, n_total, start, chunk_rows, progress_desc):
    """Consume `batches` (one array per cut name, in row order) and commit them in row chunks.

    A chunk is committed only when complete, so a crash loses at most one chunk of work.
    """
    from tqdm import tqdm

    buf = {c: [] for c in names}
    buffered = 0
    row = start
    bar = tqdm(total=n_total, initial=start, unit="img", desc=progress_desc, dynamic_ncols=True,
               mininterval=1.0)
    for outs in batches:
        for c, o in zip(names, outs):
            buf[c].append(np.asarray(o))
        k = len(buf[names[0]][-1])
        buffered += k
        bar.update(k)
        if buffered >= chunk_rows:
            row = store.write_rows(path, row, {c: np.concatenate(buf[c]) for c in names})
            buf = {c: [] for c in names}
            buffered = 0
    if buffered:
        row = store.write_rows(path, row, {c: np.concatenate(buf[c]) for c in names})
    bar.close()
    return row


def _compute_dtype(model) -> str:
    dtypes = {getattr(layer, "compute_dtype", None) for layer in model.layers[1:]}
    return ",".join(sorted(d for d in dtypes if d)) or "float32"


def _load_network(cfg, name, weights, data_shape):
    """The backbone through the registry, or a saved model outside it (cut at the given layers)."""
    import keras

    keras.utils.set_random_seed(cfg["experiment"]["seed"])  # random init: same on every run
    whole_model = str(weights).endswith((".keras", ".h5")) and \
        not str(weights).endswith(".weights.h5")
    if name not in registry.REGISTRY and whole_model:
        return load_backbone(name, weights=weights, layer=list(cfg["extract"]["cuts"]))
    spec = registry.get(name)
    size = cfg["backbone"].get("input_size", 0)
    if not size and not spec.own and whole_model:
        shape = None     # a whole saved model under a registry name: at its saved input size
    else:
        shape = input_shape_for(spec, data_shape, size)
    return load_backbone(name, weights=weights, input_shape=shape)


def plan(cfg: dict, weights: str, prepared: dict, backbone: str | None = None) -> dict | None:
    """Everything an extraction of `backbone` (default: backbone.name) needs, decided once.

    Returns the plan: spec, cuts_meta, input, order, key, provenance, target, and `batches(order,
    start)` → one array per cut per batch (networks also give model and cut_model). None when
    the entry has nothing to embed (raw pixels of mixed sizes with no extract.pixels_size).
    Deterministic in (cfg, weights, data), so every Dask worker computes the same plan.
    """
    prepared = apply_channels(cfg, prepared)
    target = prepared["target"]
    name = backbone or cfg["backbone"]["name"]
    rows = {"rows": target.source.get("content_hash") or target.source,
            "split_def": prepared["split_def"], "split_order": SPLIT_ORDER}
    planner = _plan_pixels if registry.is_pixels(name) else _plan_network
    p = planner(cfg, name, weights, prepared, target)
    if p is None:
        return None
    key = extraction_key({**rows, **p.pop("key_parts")})
    p["provenance"] = {"extraction_key": key, **p["provenance"]}
    p.update(key=key, order=order_by_split(target, SPLIT_ORDER), target=target)
    return p


def _common_provenance(cfg, prepared, target) -> dict:
    return {"dataset": cfg["dataset"]["name"], "dataset_source": target.source,
            "split_def": prepared["split_def"], "seed": cfg["experiment"]["seed"], "config": cfg}


def _plan_network(cfg, name, weights, prepared, target) -> dict:
    bcfg, ecfg = cfg["backbone"], cfg["extract"]
    data_shape = target.image_shape
    model, spec, bprov = _load_network(cfg, name, weights, data_shape)
    precision = ecfg.get("precision", "float32")
    model = with_precision(model, precision)
    converted = target.source.get("channels_converted")
    check_channels(spec.name, int(model.input.shape[-1]), cds.channels_of(target))
    cut_pairs = resolve_cuts(model, spec, list(ecfg["cuts"]))
    layers = [layer for _, layer in cut_pairs]
    pooling = ecfg["pooling"]
    widths = cut_widths(model, layers, pooling)
    in_h, in_w, in_c = (int(v) for v in model.input.shape[1:4])
    cuts_meta = {}
    for (alias, layer), width in zip(cut_pairs, widths):
        meta = {"width": int(width), "layer": layer, "pooling": pooling}
        frozen = spec.frozen_blocks(layer=layer)
        if frozen is not None:
            meta["frozen_blocks"] = frozen
            meta["n_blocks"] = spec.n_blocks
        cuts_meta[alias] = meta
    key_parts = {
        "backbone": name, "weights": bprov.get("weights_sha256", bprov.get("weights")),
        "input": [in_h, in_w, in_c], "resize": bcfg["resize_method"], "cuts": cuts_meta,
        "dtype": ecfg["dtype"], **({"channels_converted": converted} if converted else {}),
        **({"precision": precision} if precision != "float32" else {})}   # float32: keys as before
    provenance = {
        "backbone": name, "backbone_info": bprov,
        "weights": weights, "cuts": {a: l for a, l in cut_pairs}, "pooling": pooling,
        "input_size": [in_h, in_w, in_c], "data_shape": list(data_shape or []),
        "resize_method": bcfg["resize_method"], "resize": resize_note(data_shape, (in_h, in_w),
                                                                     bcfg["resize_method"]),
        "precision": precision, "compute_dtype": _compute_dtype(model),
        "preprocess": spec.preprocess,
        "channels": "repeated gray to RGB" if (in_c == 3 and data_shape and data_shape[-1] == 1)
        else "as is",
        "dataset_channels": {"setting": cfg["dataset"].get("channels", "auto"),
                             "channels": cds.channels_of(target), "converted": converted},
        **_common_provenance(cfg, prepared, target),
        "skipped_files": len(target.skipped), "packages": package_versions(),
        "code_version": code_version(),
    }
    cm = cut_model(model, layers, pooling)
    input_shape, method = (in_h, in_w, in_c), bcfg["resize_method"]

    def batches(order, start):
        forward = make_forward(cm, spec, input_shape, method)
        for i, x in enumerate(image_pipeline(target, order, ecfg["batch_size"], start,
                                             size=(in_h, in_w), method=method)):
            if i == 0:
                check_range(spec, prepare_inputs(x[:8], spec, input_shape, method))
            yield [o.numpy() for o in forward(x)]

    return {"model": model, "spec": spec, "cut_model": cm, "cuts_meta": cuts_meta,
            "input": input_shape, "key_parts": key_parts, "provenance": provenance,
            "batches": batches, "desc": f"extract {spec.name}"}


def _plan_pixels(cfg, name, weights, prepared, target) -> dict | None:
    """The raw-pixel baseline (`backbones.pixels`): pixels / 255, flattened, at a bounded size
    (`extract.pixels_size`, area-resized) so it cannot dominate the run."""
    spec = registry.get(name)
    cap = int(cfg["extract"].get("pixels_size", 0) or 0)
    hw = pixels.pixels_shape(target.image_shape, cap)
    if hw is None:
        log.warning("Images differ in size and extract.pixels_size = 0: no raw-pixel baseline.")
        return None
    channels = target.image_shape[2] if target.image_shape else \
        target.images([0], size=(1, 1)).shape[-1]
    shape = (*hw, channels)
    resized = target.image_shape is None or tuple(hw) != tuple(target.image_shape[:2])
    width = int(np.prod(shape))
    (alias, layer), = spec.cuts.items()
    cuts_meta = {alias: {"width": width, "layer": layer, "pooling": pixels.POOLING,
                         "frozen_blocks": spec.frozen_blocks(layer=layer)}}
    key_parts = {"pixels": list(shape), "dtype": cfg["extract"]["dtype"],
                 **({"resize": "area"} if resized else {})}
    provenance = {"backbone": name, "weights": "none",
                  "cuts": {alias: layer}, "pooling": pixels.POOLING, "input_size": list(shape),
                  "data_shape": list(target.image_shape or []), "pixels_size": cap,
                  "resize_method": "area" if resized else "none",
                  "preprocess": pixels.DESCRIPTION,
                  **_common_provenance(cfg, prepared, target),
                  "packages": package_versions(), "code_version": code_version()}
    chunk = cfg["extract"]["chunk_rows"]

    def batches(order, start):
        for s in range(start, len(order), chunk):
            yield [spec.preprocess_fn(pixels.pixel_batch(target, order[s:s + chunk], hw))]

    return {"spec": spec, "cuts_meta": cuts_meta, "input": shape, "key_parts": key_parts,
            "provenance": provenance, "batches": batches, "desc": name}


def run_rows(p: dict, cfg: dict, path: Path, lo: int, hi: int, extra_provenance=None) -> dict:
    """Embed rows order[lo:hi] of the plan into the store at `path` (created, resumed or skipped)."""
    ecfg = cfg["extract"]
    target, order = p["target"], p["order"][lo:hi]
    n = len(order)
    prov = dict(p["provenance"], **(extra_provenance or {}))
    create_kwargs = dict(ids=np.asarray(target.ids)[order], labels=np.asarray(target.labels)[order],
                         splits=np.asarray(target.split)[order],
                         class_names=list(target.class_names), cuts=p["cuts_meta"],
                         provenance=prov, dtype=ecfg["dtype"], compression=ecfg["compression"],
                         chunk_rows=ecfg["chunk_rows"])
    start = _prepare_store(path, p["key"], create_kwargs)
    t0 = time.perf_counter()
    if start >= n:
        log.info("%s is up to date (%d rows, cuts %s); nothing to do.", path, n,
                 list(p["cuts_meta"]))
    else:
        if start:
            log.info("Resuming %s at row %d of %d.", path, start, n)
        write_store(path, list(p["cuts_meta"]), p["batches"](order, start), n, start,
                    ecfg["chunk_rows"], p["desc"])
    seconds = time.perf_counter() - t0
    return {"store": str(path), "rows": n, "skipped": start >= n, "seconds": round(seconds, 2),
            "images_per_second": round((n - min(start, n)) / max(seconds, 1e-9), 1)}


def extract_store(cfg: dict, path, weights: str, prepared: dict, backbone: str | None = None):
    """Plan `backbone` and embed all its rows into the store at `path`, in this process.
    Returns the summary (rows, seconds, cuts, extraction_key), or {"skipped": why}."""
    p = plan(cfg, weights, prepared, backbone)
    if p is None:
        return {"skipped": "variable image sizes"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = run_rows(p, cfg, path, 0, len(p["order"]))
    return dict(summary, cuts=p["cuts_meta"], extraction_key=p["key"])
