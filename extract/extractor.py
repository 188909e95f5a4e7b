"""Extraction: stream a dataset through ONE forward pass that taps every cut point, into the store.

Why one pass: the layers below the deepest cut are computed once, not once per cut point (the
naive notebook loop), and the pooled outputs of every cut are written side by side.
Why a compiled `tf.function` call and not `model.predict`: on CPU it reached 90-100 % of the matmul
peak where `predict` reached about half (BRIEF §12).

The run is keyed by a content hash of everything that decides the numbers (dataset rows, backbone
and weights, input size, cuts, pooling, dtype). Re-running with the same key skips a complete store
and resumes an incomplete one from its last committed chunk; a different key moves the old store
aside (never deletes it) and starts a new one.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from cutpoint import datasets as cds
from cutpoint.splits import SPLIT_ORDER
from cutpoint.provenance import code_version, hash_obj, package_versions
from embeddings import store

log = logging.getLogger("cutpoint.extract")

PIXELS_CUT = "pixels"


def _tf():
    import tensorflow as tf
    return tf


def image_pipeline(dataset, order, batch_size, start=0, size=None, method="bilinear"):
    """tf.data over row batches: parallel decode (folder images decode in PIL threads), prefetch.

    Only a few batches are in memory at a time, so memory stays flat as the dataset grows. Yields
    uint8 batches in row order (deterministic). Same-size data comes at its native size (the
    forward pass resizes whole batches); only images of different sizes (folders) are resized,
    to `size` with `method`'s Pillow filter, while decoding, so that they can be batched.
    """
    tf = _tf()
    order = np.asarray(order)
    starts = np.arange(start, len(order), batch_size, dtype=np.int64)
    size = None if dataset.image_shape is not None else size
    if dataset.image_shape is None and size is None:
        raise ValueError(f"Dataset {dataset.name!r} has images of different sizes; pass the size "
                         "to resize them to (backbone.input_size).")
    shape = dataset.image_shape or (*size, dataset.images(order[:1], size=size).shape[-1])

    def load(s):
        idx = order[int(s):int(s) + batch_size]
        return dataset.images(idx, size=size, method=method).astype(np.uint8, copy=False)

    ds = tf.data.Dataset.from_tensor_slices(starts)
    ds = ds.map(lambda s: tf.numpy_function(load, [s], tf.uint8),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(lambda x: tf.ensure_shape(x, (None, *shape)))
    return ds.prefetch(2)


def make_forward(model, spec_preprocess, input_hw, channels, resize_method="bilinear"):
    """Compiled uint8 batch → list of pooled cut outputs: cast, channels, resize, preprocess, model.

    The whole batch is resized here, in the graph, from the data's native size (the
    backbone.resize_method, bilinear by default); a batch already at `input_hw` is not touched.
    Outputs are float32 whatever the model computes in (extract.precision).
    """
    tf = _tf()

    @tf.function(reduce_retracing=True)
    def forward(x):
        x = tf.cast(x, tf.float32)
        if channels == 3 and x.shape[-1] == 1:
            x = tf.repeat(x, 3, axis=-1)
        if tuple(x.shape[1:3]) != tuple(input_hw):
            x = tf.image.resize(x, input_hw, method=resize_method)
            x = tf.clip_by_value(x, 0.0, 255.0)
        out = model(spec_preprocess(x), training=False)
        return [tf.cast(o, tf.float32) for o in (out if isinstance(out, (list, tuple)) else [out])]

    return forward


def resize_note(data_shape, input_hw, method: str) -> str:
    """Where and how images reach the model's input size (provenance)."""
    h, w = input_hw
    if data_shape is None:
        return (f"mixed sizes: each image resized to {h}x{w} while decoding (Pillow "
                f"{cds.pil_filter_name(method)}, in parallel decode threads)")
    if tuple(data_shape[:2]) == (h, w):
        return "none (native size)"
    return (f"{data_shape[0]}x{data_shape[1]} to {h}x{w}: tf.image.resize ({method}) on whole "
            "batches inside the compiled forward pass")


def _compute_dtype(model) -> str:
    dtypes = {getattr(layer, "compute_dtype", None) for layer in model.layers[1:]}
    return ",".join(sorted(d for d in dtypes if d)) or "float32"


def _check_range(spec, spec_preprocess, batch):
    """Refuse a batch whose preprocessed values fall outside what the backbone expects."""
    tf = _tf()
    x = spec_preprocess(tf.cast(batch[:8], tf.float32))
    lo, hi = float(tf.reduce_min(x)), float(tf.reduce_max(x))
    want_lo, want_hi = spec.input_range
    slack = 0.05 * (want_hi - want_lo)
    if lo < want_lo - slack or hi > want_hi + slack:
        raise ValueError(
            f"Backbone {spec.name!r} expects preprocessed input in [{want_lo}, {want_hi}] "
            f"({spec.preprocess} preprocessing of [0, 255] images) but got [{lo:.3g}, {hi:.3g}]. "
            "Images must be uint8 in [0, 255]; do not rescale them before extraction.")


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


def _load_model(cfg, weights, data_shape):
    """The backbone through the registry, or a saved model outside it (cut at the given layers)."""
    from extract import backbones

    import keras
    keras.utils.set_random_seed(cfg["experiment"]["seed"])  # random init: same on every run
    name = cfg["backbone"]["name"]
    if name not in backbones.list_backbones() and str(weights).endswith((".keras", ".h5")) \
            and not str(weights).endswith(".weights.h5"):
        return backbones.load_backbone(name, weights=weights, layer=list(cfg["extract"]["cuts"]))
    spec = backbones.get_spec(name)
    size = cfg["backbone"].get("input_size", 0)
    if not size and not spec.own and str(weights).endswith((".keras", ".h5")) \
            and not str(weights).endswith(".weights.h5"):
        shape = None     # a whole saved model under a registry name: at its saved input size
    else:
        shape = backbones.input_shape_for(spec, data_shape, size)
    return backbones.load_backbone(name, weights=weights, input_shape=shape)


def apply_channels(cfg: dict, prepared: dict) -> dict:
    """`dataset.channels` = 1 or 3: the experiment's views with images converted to that many
    channels (RGB → gray by luminance, gray → RGB by repetition); "auto": unchanged (a 3-channel
    backbone repeats gray itself). Idempotent."""
    setting = cfg["dataset"].get("channels", "auto")
    if setting == "auto":
        return prepared
    out = dict(prepared)
    for role in ("source", "target"):
        if out.get(role) is not None:
            out[role] = cds.with_channels(out[role], int(setting))
    return out


def _check_channels(name: str, model_c: int, data_c: int) -> None:
    if data_c == 3 and model_c == 1:
        raise ValueError(
            f"Backbone {name!r} takes 1-channel (grayscale) images; the data has 3 channels "
            "(RGB). Set dataset.channels = 1 to convert them to gray by luminance (in the config's "
            "[dataset] section, or `--set dataset.channels=1`).")
    if model_c not in (data_c, 3):
        raise ValueError(f"Backbone {name!r} takes {model_c}-channel images; the data has "
                         f"{data_c}. Set dataset.channels to {model_c}.")


def plan(cfg: dict, weights: str, prepared: dict) -> dict:
    """Everything an extraction needs, decided once: model, cuts, row order, provenance, key.

    Deterministic in (cfg, weights, data), so every Dask worker computes the same plan.
    """
    from extract import backbones

    prepared = apply_channels(cfg, prepared)
    target = prepared["target"]
    bcfg, ecfg = cfg["backbone"], cfg["extract"]
    data_shape = target.image_shape
    model, spec, bprov = _load_model(cfg, weights, data_shape)
    precision = ecfg.get("precision", "float32")
    model = backbones.with_precision(model, precision)
    converted = target.source.get("channels_converted")
    _check_channels(spec.name, int(model.input.shape[-1]), cds.channels_of(target))
    cut_pairs = backbones.resolve_cuts(model, spec, list(ecfg["cuts"]))
    layers = [layer for _, layer in cut_pairs]
    pooling = ecfg["pooling"]
    widths = backbones.cut_widths(model, layers, pooling)
    in_h, in_w, in_c = (int(v) for v in model.input.shape[1:4])
    order = cds.order_by_split(target, SPLIT_ORDER)
    blocks = list(getattr(spec, "blocks", ()) or ())
    cuts_meta = {}
    for (alias, layer), width in zip(cut_pairs, widths):
        meta = {"width": int(width), "layer": layer, "pooling": pooling}
        if layer in blocks:
            meta["frozen_blocks"] = blocks.index(layer) + 1
            meta["n_blocks"] = len(blocks)
        cuts_meta[alias] = meta
    key = extraction_key({
        "rows": target.source.get("content_hash") or target.source,
        "split_def": prepared["split_def"], "split_order": SPLIT_ORDER, "backbone": bcfg["name"],
        "weights": bprov.get("weights_sha256", bprov.get("weights")),
        "input": [in_h, in_w, in_c], "resize": bcfg["resize_method"], "cuts": cuts_meta,
        "dtype": ecfg["dtype"], **({"channels_converted": converted} if converted else {}),
        **({"precision": precision} if precision != "float32" else {})})   # float32: keys as before
    provenance = {
        "extraction_key": key, "backbone": bcfg["name"], "backbone_info": bprov,
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
        "dataset": cfg["dataset"]["name"], "dataset_source": target.source,
        "split_def": prepared["split_def"], "seed": cfg["experiment"]["seed"], "config": cfg,
        "skipped_files": len(target.skipped), "packages": package_versions(),
        "code_version": code_version(),
    }
    return {"model": model, "spec": spec, "cut_model": backbones.cut_model(model, layers, pooling),
            "cuts_meta": cuts_meta, "input": (in_h, in_w, in_c), "order": order, "key": key,
            "provenance": provenance, "target": target}


def run_rows(p: dict, cfg: dict, path: Path, lo: int, hi: int, extra_provenance=None) -> dict:
    """Embed rows order[lo:hi] of the plan into the store at `path` (created, resumed or skipped)."""
    from extract import backbones

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
        spec, (in_h, in_w, in_c) = p["spec"], p["input"]
        preprocess = backbones.preprocess_fn(spec)
        forward = make_forward(p["cut_model"], preprocess, (in_h, in_w), in_c,
                               cfg["backbone"]["resize_method"])
        pipe = image_pipeline(target, order, ecfg["batch_size"], start, size=(in_h, in_w),
                              method=cfg["backbone"]["resize_method"])

        def batches():
            for i, x in enumerate(pipe):
                if i == 0:
                    xx = _tf().cast(x, _tf().float32)
                    if in_c == 3 and xx.shape[-1] == 1:
                        xx = _tf().repeat(xx, 3, axis=-1)
                    _check_range(spec, preprocess, xx)
                yield [o.numpy() for o in forward(x)]

        write_store(path, list(p["cuts_meta"]), batches(), n, start, ecfg["chunk_rows"],
                    f"extract {spec.name}")
    seconds = time.perf_counter() - t0
    return {"store": str(path), "rows": n, "skipped": start >= n, "seconds": round(seconds, 2),
            "images_per_second": round((n - min(start, n)) / max(seconds, 1e-9), 1)}


def extract(cfg: dict, run_dir, prepared=None, workers: int = 0, scheduler: str = "") -> dict:
    """Embed the experiment's target data at every requested cut point. Returns a summary.

    workers > 1 (or a Dask scheduler address) shards the rows over Dask workers, each writing its
    own store, then joins the shards (see `extract.distributed`).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    stamp = run_dir / "extract.json"   # the Makefile's target: present only after a completed run
    stamp.unlink(missing_ok=True)
    prepared = apply_channels(cfg, prepared or cds.prepare(cfg, run_dir=run_dir))
    weights = cfg["backbone"]["weights"]
    if weights == "self":
        weights = str(ensure_self_trained(cfg, run_dir, prepared))
    skipped = prepared["target"].skipped
    report = run_dir / "skipped_files.csv"
    if skipped:
        prepared["target"].write_skipped_report(report)
        log.warning("%d unreadable files were skipped; they are listed in %s.", len(skipped), report)
    else:
        report.unlink(missing_ok=True)   # a report from an earlier scan would no longer be true
    path = run_dir / "embeddings.h5"
    if workers > 1 or scheduler:
        from extract.distributed import extract_sharded
        summary = extract_sharded(cfg, run_dir, weights, prepared, path, workers, scheduler)
    else:
        p = plan(cfg, weights, prepared)
        summary = run_rows(p, cfg, path, 0, len(p["order"]))
        summary.update(cuts=p["cuts_meta"], extraction_key=p["key"])
    if cfg["extract"].get("pixels", True):
        summary["pixels"] = extract_pixels(cfg, run_dir, prepared)
    summary["skipped_files"] = len(skipped)
    summary["skipped_report"] = str(report) if skipped else ""
    tmp = stamp.with_name(stamp.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(stamp)                 # written last, atomically: the stage is complete
    return summary


def ensure_self_trained(cfg, run_dir, prepared):
    """Train the configured own CNN on the source half (A), or reuse it while its inputs match."""
    from extract.train import train_backbone

    source = prepared["source"]
    if source is None:
        raise ValueError("backbone.weights = 'self' trains the backbone on dataset.source_classes, "
                         "but source_classes is empty. Give the classes of half A (e.g. [0, 1, 2, "
                         "3, 4]) or use weights = 'imagenet' / a weights file.")
    seed = cfg["experiment"]["seed"]
    tr, va = (np.flatnonzero(np.asarray(source.split) == s) for s in ("train", "val"))
    size, method = None, cfg["backbone"]["resize_method"]
    if source.image_shape is None:  # an image folder of mixed sizes: train at the input size
        size = (cfg["backbone"]["input_size"],) * 2
        if not size[0]:
            raise ValueError("The source images differ in size: set backbone.input_size (e.g. 64) "
                             "so they can be resized for training the backbone.")
    return train_backbone(
        cfg["backbone"]["name"], train=(source.images(tr, size=size, method=method),
                                        source.labels[tr]),
        val=(source.images(va, size=size, method=method), source.labels[va]),
        cfg_train=cfg["train"],
        out_dir=Path(run_dir) / "backbone", seed=seed, num_classes=len(source.class_names),
        class_names=list(source.class_names))


def pixels_shape(image_shape, cap: int):
    """The raw-pixel store's (h, w): the data's size with its longest side capped at `cap`
    (aspect kept, rounded); images of mixed sizes → (cap, cap); cap 0 = native (None if mixed)."""
    cap = int(cap or 0)
    if image_shape is None:
        return (cap, cap) if cap else None
    h, w = int(image_shape[0]), int(image_shape[1])
    if not cap or max(h, w) <= cap:
        return h, w
    scale = cap / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def area_resize(images: np.ndarray, hw) -> np.ndarray:
    """uint8 (n, h, w, c) → (n, *hw, c) by area averaging (PIL's BOX filter): the right filter
    for shrinking, with no aliasing."""
    from PIL import Image
    if tuple(images.shape[1:3]) == tuple(hw):
        return images
    out = np.empty((len(images), *hw, images.shape[-1]), np.uint8)
    for i, im in enumerate(images):
        if im.shape[-1] == 1:
            out[i, ..., 0] = np.asarray(Image.fromarray(im[..., 0], "L").resize(
                (hw[1], hw[0]), Image.BOX))
        else:
            out[i] = np.asarray(Image.fromarray(im, "RGB").resize((hw[1], hw[0]), Image.BOX))
    return out


def _pixel_batch(dataset, rows, hw) -> np.ndarray:
    """Images of `rows` at `hw`, area-resized from their native size (one by one when mixed)."""
    if dataset.image_shape is not None:
        return area_resize(dataset.images(rows), hw)
    return np.concatenate([area_resize(dataset.images([r]), hw) for r in rows])


def extract_pixels(cfg, run_dir, prepared=None) -> dict:
    """The raw-pixel pseudo-backbone: pixels / 255, flattened, in their own store (`pixels.h5`),
    at a bounded size (`extract.pixels_size`, area-resized) so it cannot dominate the run."""
    prepared = prepared or cds.prepare(cfg)
    target = prepared["target"]
    cap = int(cfg["extract"].get("pixels_size", 0) or 0)
    hw = pixels_shape(target.image_shape, cap)
    path = Path(run_dir) / "pixels.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    if hw is None:
        log.warning("Images differ in size and extract.pixels_size = 0: no raw-pixel baseline.")
        return {"skipped": "variable image sizes"}
    channels = target.image_shape[2] if target.image_shape else \
        target.images([0], size=(1, 1)).shape[-1]
    shape = (*hw, channels)
    resized = target.image_shape is None or tuple(hw) != tuple(target.image_shape[:2])
    order = cds.order_by_split(target, SPLIT_ORDER)
    n, width = len(order), int(np.prod(shape))
    cuts_meta = {PIXELS_CUT: {"width": width, "layer": "input", "pooling": "flatten",
                              "frozen_blocks": 0}}
    key_parts = {"rows": target.source.get("content_hash") or target.source,
                 "split_def": prepared["split_def"], "split_order": SPLIT_ORDER,
                 "pixels": list(shape), "dtype": cfg["extract"]["dtype"]}
    if resized:
        key_parts["resize"] = "area"
    key = extraction_key(key_parts)
    provenance = {"extraction_key": key, "backbone": "pixels", "weights": "none",
                  "cuts": {PIXELS_CUT: "input"}, "pooling": "flatten", "input_size": list(shape),
                  "data_shape": list(target.image_shape or []), "pixels_size": cap,
                  "resize_method": "area" if resized else "none",
                  "preprocess": "x / 255, flattened",
                  "dataset": cfg["dataset"]["name"], "dataset_source": target.source,
                  "split_def": prepared["split_def"], "seed": cfg["experiment"]["seed"],
                  "config": cfg, "packages": package_versions(), "code_version": code_version()}
    create_kwargs = dict(ids=np.asarray(target.ids)[order], labels=np.asarray(target.labels)[order],
                         splits=np.asarray(target.split)[order],
                         class_names=list(target.class_names), cuts=cuts_meta,
                         provenance=provenance, dtype=cfg["extract"]["dtype"],
                         compression=cfg["extract"]["compression"],
                         chunk_rows=cfg["extract"]["chunk_rows"])
    start = _prepare_store(path, key, create_kwargs)
    chunk = cfg["extract"]["chunk_rows"]

    def batches():
        for s in range(start, n, chunk):
            x = _pixel_batch(target, order[s:s + chunk], hw).reshape(-1, width)
            yield [x.astype(np.float32) / 255.0]

    if start < n:
        write_store(path, [PIXELS_CUT], batches(), n, start, chunk, "pixels")
    return {"store": str(path), "rows": n, "width": width}


def embed_images(provenance: dict, cut: str, dataset, batch_size: int = 256) -> np.ndarray:
    """Embed new images exactly as a store was made: same backbone, weights, cut, pooling, input.

    `provenance` is a store's provenance (`store.provenance(path)`, also saved with every fitted
    classical model), so a model trained on a store can be applied to images it never saw.
    """
    from extract import backbones

    want_c = (provenance.get("dataset_channels") or {}).get("channels") or \
        (provenance.get("data_shape") or [None] * 3)[-1]
    if want_c and cds.channels_of(dataset) != want_c:   # as the store's images were
        log.info("Converting the new images from %d to %d channels, like the store's.",
                 cds.channels_of(dataset), want_c)
        dataset = cds.with_channels(dataset, int(want_c))
    if cut not in provenance.get("cuts", {}):
        raise ValueError(f"Cut {cut!r} is not in the recorded extraction (cuts: "
                         f"{', '.join(provenance.get('cuts', {}))}).")
    if provenance.get("backbone") == "pixels":
        shape = tuple(provenance["input_size"])
        if provenance.get("resize_method") == "area":   # resized like the store, from native
            if shape[2] != (dataset.image_shape or shape)[2]:
                raise ValueError(f"The raw-pixel model expects {shape[2]}-channel images; got "
                                 f"{dataset.image_shape[2]}.")
            batches = (_pixel_batch(dataset, np.arange(s, min(s + 1024, len(dataset))),
                                    shape[:2]) for s in range(0, len(dataset), 1024))
        elif dataset.image_shape != shape:
            raise ValueError(f"The raw-pixel model expects images of shape {shape}; got "
                             f"{dataset.image_shape}.")
        else:
            batches = (x for _, x in dataset.iter_batches(batch_size=4096))
        return np.concatenate([x.reshape(len(x), -1).astype(np.float32) / 255.0
                               for x in batches])
    in_h, in_w, in_c = provenance["input_size"]
    import keras
    keras.utils.set_random_seed(provenance.get("seed", 0))  # as `plan` did, for random init
    generic = provenance["backbone"] not in backbones.list_backbones()
    model, spec, _ = backbones.load_backbone(
        provenance["backbone"], weights=provenance["weights"], input_shape=(in_h, in_w, in_c),
        layer=list(provenance["cuts"].values()) if generic else None)
    model = backbones.with_precision(model, provenance.get("precision", "float32"))
    cut_model = backbones.cut_model(model, [provenance["cuts"][cut]], provenance["pooling"])
    forward = make_forward(cut_model, backbones.preprocess_fn(spec), (in_h, in_w), in_c,
                           provenance.get("resize_method", "bilinear"))
    order = np.arange(len(dataset))
    return np.concatenate([forward(x)[0].numpy() for x in
                           image_pipeline(dataset, order, batch_size, size=(in_h, in_w),
                                          method=provenance.get("resize_method", "bilinear"))])
