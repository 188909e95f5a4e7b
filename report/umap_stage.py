"""UMAP pictures of every cut point's embeddings (BRIEF §8, §11).

For each store of the run (``embeddings.h5``, and ``pixels.h5`` when present), each cut and each
split in ``cfg["umap"]["splits"]``: a 2-D UMAP, stored in the store (`write_umap`) with its
parameters, and a PNG coloured by class with the best classical model's mistakes at that cut
marked. Every point is embedded and drawn unless ``umap.max_points`` > 0, in which case a seeded
stratified subsample is used and the title says so (TensorBoard's projector samples silently; we
don't). ``random_state`` ≥ 0 makes UMAP reproducible but single-threaded (umap#1001); -1 runs it
in parallel, unseeded. The choice is recorded in the stored params.

At scale (umap-learn runs out of memory around 1-5 M points: umap#500, #511, #1151): above
``umap.fit_points`` points, UMAP is fitted on a seeded stratified sample of that many
(`low_memory=True`; wider than ``umap.pca_dims``, through a PCA fitted on the same sample first)
and every other point is placed with ``UMAP.transform``, ``umap.transform_chunk`` rows at a
time, read from the store chunk by chunk: memory holds the sample, one chunk and the (n, 2)
coordinates, never the split's matrix. The stored params, the stage's summary and the picture's
title say so. Below it, one ``fit_transform`` of every point, as before.

Idempotent: a (cut, split) whose stored params equal the current ones (which include a hash of
the embedded data) is not recomputed, and its PNG is only redrawn when missing or when the
mistakes to mark came from another model.
"""
from __future__ import annotations

import contextlib
import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np

from cutpoint import results
from cutpoint import runfolder as rf
from cutpoint.provenance import package_version
from embeddings import store

STORES = ("embeddings", "pixels")


def _import_umap():
    """`import umap` pulls in TensorFlow for ParametricUMAP (≈ 5 s); we only need `UMAP`.

    Marking `umap.parametric_umap` as unimportable for the duration of the import makes umap
    skip it (it catches the ImportError); with TensorFlow already loaded there is nothing to save.
    """
    if "umap" in sys.modules or "tensorflow" in sys.modules:
        import umap
        return umap.UMAP
    sys.modules["umap.parametric_umap"] = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImportWarning)
            import umap
    finally:
        if sys.modules.get("umap.parametric_umap", 0) is None:
            del sys.modules["umap.parametric_umap"]
    return umap.UMAP


def safe_name(text: str) -> str:
    """A cut or split name usable in a file name (Keras layer names may contain odd characters)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


def png_name(store_name: str, cut: str, split: str) -> str:
    return f"umap_{safe_name(store_name)}_{safe_name(cut)}_{safe_name(split)}.png"


def _check_umap_cfg(u: dict) -> None:
    if not (isinstance(u["n_neighbors"], int) and u["n_neighbors"] >= 2):
        raise ValueError(f"umap.n_neighbors must be an integer >= 2. Got {u['n_neighbors']!r}.")
    if not 0 <= u["min_dist"] <= 1:
        raise ValueError(f"umap.min_dist must be in [0, 1]. Got {u['min_dist']!r}.")
    if not isinstance(u["random_state"], int) or u["random_state"] < -1:
        raise ValueError(f"umap.random_state must be an integer >= 0 (reproducible, single-"
                         f"threaded) or -1 (parallel, unseeded). Got {u['random_state']!r}.")
    if not isinstance(u["max_points"], int) or u["max_points"] < 0:
        raise ValueError(f"umap.max_points must be an integer >= 0 (0 = every point). "
                         f"Got {u['max_points']!r}.")


def stratified_subsample(y, max_points: int, seed: int) -> np.ndarray:
    """Sorted row indices: ≈ max_points rows, each class in proportion (at least one each)."""
    y = np.asarray(y)
    n = len(y)
    if max_points <= 0 or n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    frac = max_points / n
    picked = []
    for lab in np.unique(y):
        rows = np.flatnonzero(y == lab)
        k = max(1, int(round(len(rows) * frac)))
        picked.append(rng.choice(rows, size=min(k, len(rows)), replace=False))
    return np.sort(np.concatenate(picked))


def umap_params(u: dict, n_points: int, n_total: int, data_hash: str, fit=None) -> dict:
    """Everything that determines the coordinates: equal params ⇒ the stored result is current.
    `fit` ({"points", "pca", "transform_chunk"}) when UMAP is fitted on a sample."""
    seeded = u["random_state"] >= 0
    version = package_version("umap-learn", "unknown")
    return {"n_components": 2, "n_neighbors": int(u["n_neighbors"]),
            "min_dist": float(u["min_dist"]), "metric": "euclidean",
            "random_state": int(u["random_state"]) if seeded else None,
            "n_jobs": 1 if seeded else -1,
            "threading": ("single-threaded: seeded for reproducibility (umap#1001)" if seeded
                          else "parallel, unseeded: coordinates differ between runs"),
            "max_points": int(u["max_points"]), "n_points": int(n_points),
            "n_total": int(n_total), "subsample_seed": int(max(u["random_state"], 0)),
            "data_hash": data_hash, "umap_learn": version, "low_memory": True,
            **({"fit_sample": fit} if fit else {})}


def _reducer(params: dict, n: int):
    UMAP = _import_umap()
    if n < 3:
        raise ValueError(f"UMAP needs at least 3 points; got {n}.")
    return UMAP(n_components=2, n_neighbors=min(params["n_neighbors"], n - 1),
                min_dist=params["min_dist"], metric=params["metric"],
                random_state=params["random_state"], n_jobs=params["n_jobs"], low_memory=True)


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        # Spectral init on tiny or disconnected graphs falls back to random init with a warning.
        warnings.filterwarnings("ignore", message=".*[Ss]pectral.*")
        warnings.filterwarnings("ignore", message=".*n_jobs.*")
        yield


def embed(X, params: dict) -> np.ndarray:
    """2-D UMAP of X with the recorded params (n_neighbors is capped for tiny inputs)."""
    reducer = _reducer(params, len(X))
    with _quiet():
        return np.asarray(reducer.fit_transform(np.asarray(X, dtype=np.float32)), dtype=np.float32)


def embed_sampled(path, cut, split, rows, fit_rows, params: dict, seed: int) -> np.ndarray:
    """(n_split, 2) coordinates, NaN outside `rows`: UMAP (after PCA to params' fit_sample
    "pca" dims when set) fitted on the split positions `fit_rows`, every other position of
    `rows` placed with `transform`, reading the store one chunk of rows at a time."""
    fit = params["fit_sample"]
    lo, hi = store.splits(path)[split]
    n = hi - lo
    coords = np.full((n, 2), np.nan, dtype=np.float32)
    want_fit, want = np.zeros(n, bool), np.zeros(n, bool)
    want_fit[fit_rows], want[rows] = True, True
    want &= ~want_fit
    chunk = int(fit["transform_chunk"])
    parts = []
    for start, (X, _, _) in zip(range(0, n, chunk),
                                store.iter_chunks(path, cut, split, chunk_rows=chunk)):
        parts.append(X[want_fit[start:start + len(X)]])
    Xfit = np.concatenate(parts)
    pca = None
    if fit["pca"]:
        from sklearn.decomposition import PCA
        pca = PCA(n_components=int(fit["pca"]), random_state=seed).fit(Xfit)
        Xfit = pca.transform(Xfit)
    reducer = _reducer(params, len(Xfit))
    with _quiet():
        reducer.fit(np.asarray(Xfit, dtype=np.float32))
        coords[want_fit] = reducer.embedding_
        del Xfit, parts
        for start, (X, _, _) in zip(range(0, n, chunk),
                                    store.iter_chunks(path, cut, split, chunk_rows=chunk)):
            sel = want[start:start + len(X)]
            if sel.any():
                Xc = X[sel] if pca is None else pca.transform(X[sel])
                coords[start + np.flatnonzero(sel)] = reducer.transform(
                    np.asarray(Xc, dtype=np.float32))
    return coords


def _stream_hash(path, cut, split, y, ids, n: int = 16) -> str:
    """`hash_arrays(X, y, ids)` of the split, X read chunk by chunk (same digest)."""
    import hashlib
    h = hashlib.sha256()
    width = int(store.cuts(path)[cut]["width"])
    h.update(f"{np.dtype(np.float32).str}{(len(y), width)}".encode())
    for X, _, _ in store.iter_chunks(path, cut, split):
        h.update(np.ascontiguousarray(X, dtype=np.float32).tobytes())
    for a in (np.asarray(y), np.asarray(ids).astype("U")):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:n]


def best_classical(rows, cut):
    """The validation-chosen classical row at this cut (highest `val_accuracy`, never test
    accuracy) that saved its predictions, or None."""
    cand = [r for r in rows if r["stage"] == "classical" and r.get("cut") == cut
            and r.get("predictions") and r.get("val_accuracy") is not None]
    return min(cand, key=results.rank_key) if cand else None


def mistakes_for(run_dir, row, ids) -> tuple:
    """Boolean mask over `ids`: True where `row`'s model got the sample wrong (None if unknown)."""
    if row is None:
        return None, "no classical model with saved predictions at this cut"
    from report.inputs import load_predictions
    p = load_predictions(run_dir, row)
    if p is None:
        return None, f"predictions file {row['predictions']} is missing"
    by_id = dict(zip(p.ids, p.y_true != p.y_pred))
    mask = np.array([bool(by_id.get(i, False)) for i in np.asarray(ids).astype(str)])
    covered = sum(i in by_id for i in np.asarray(ids).astype(str))
    if covered == 0:
        return None, f"{row['method']} has no predictions for these samples"
    return mask, f"x = mistakes of {row['method']} ({int(mask.sum())} of {covered})"


def store_paths(run_dir) -> dict:
    """{store name: path} of the run's stores that exist."""
    run_dir = Path(run_dir)
    return {name: run_dir / f"{name}.h5" for name in STORES if (run_dir / f"{name}.h5").is_file()}


def _stored_params(path, cut, split):
    try:
        return store.read_umap(path, cut, split)[1]
    except store.StoreError:
        return None


def run_umap(run_dir, cfg, log=print) -> dict:
    """UMAP + PNG for every (store, cut, split); returns the summary written to umap/done.json."""
    run_dir = Path(run_dir)
    u = cfg["umap"]
    _check_umap_cfg(u)
    stores = store_paths(run_dir)
    if "embeddings" not in stores:
        raise FileNotFoundError(f"No embedding store at {run_dir / rf.EMBEDDINGS}. Run "
                                f"`make extract` first (or pass the right --run-dir).")
    rows = results.comparable(results.read(rf.results_csv(run_dir)), cfg)
    out_dir = run_dir / rf.REPORT
    out_dir.mkdir(parents=True, exist_ok=True)
    done_path = rf.done_json(run_dir, rf.UMAP)
    previous = {}
    if done_path.is_file():
        try:
            previous = {(e["store"], e["cut"], e["split"]): e
                        for e in json.loads(done_path.read_text()).get("entries", [])}
        except (ValueError, KeyError, TypeError):
            previous = {}
    entries = []
    for store_name, path in stores.items():
        available = store.splits(path)
        names = store.class_names(path)
        for split in u["splits"]:
            if split not in available:
                raise ValueError(f"umap.splits contains {split!r}, which is not a split of "
                                 f"{path}. Available splits: {list(available)}.")
            for cut in store.cuts(path):
                entries.append(_one(run_dir, path, store_name, cut, split, names, rows, u,
                                    out_dir, previous.get((store_name, cut, split)), log))
    summary = {"entries": entries, "config": u}
    done_path.parent.mkdir(parents=True, exist_ok=True)
    done_path.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return summary


def _one(run_dir, path, store_name, cut, split, names, rows, u, out_dir, prev, log) -> dict:
    samples = store.read_samples(path, split)     # labels and ids only: no matrix yet
    y, ids = samples["labels"], samples["ids"]
    n_total = len(y)
    if n_total < 3:  # e.g. an empty val split: nothing to embed, say so instead of failing
        log(f"UMAP {store_name}/{cut}/{split}: skipped, only {n_total} rows.")
        return {"store": store_name, "cut": cut, "split": split, "png": None, "n_points": 0,
                "n_total": n_total, "computed": False, "skipped": f"only {n_total} rows"}
    seed = max(u["random_state"], 0)
    keep = stratified_subsample(y, u["max_points"], seed)
    fit_rows, fit = keep, None
    if 0 < u["fit_points"] < len(keep):
        fit_rows = keep[stratified_subsample(y[keep], u["fit_points"], seed)]
        width = int(store.cuts(path)[cut]["width"])
        fit = {"points": int(len(fit_rows)), "of": int(len(keep)),
               "pca": int(u["pca_dims"]) if 0 < u["pca_dims"] < width else None,
               "width": width, "transform_chunk": int(u["transform_chunk"])}
    data_hash = _stream_hash(path, cut, split, y, ids)
    params = umap_params(u, len(keep), n_total, data_hash, fit)
    computed = _stored_params(path, cut, split) != params
    if computed:
        log(f"UMAP {store_name}/{cut}/{split}: {len(keep)} of {n_total} points"
            + (f", fitted on {len(fit_rows)}" if fit else "") + " …")
        if fit:
            coords = embed_sampled(path, cut, split, keep, fit_rows, params, seed)
        else:
            X = store.read(path, cut, split)[0]
            coords = np.full((n_total, 2), np.nan, dtype=np.float32)  # not embedded: NaN
            coords[keep] = embed(X[keep], params)
            del X
        store.write_umap(path, cut, split, coords, params)
    coords, _ = store.read_umap(path, cut, split)
    best = best_classical(rows, cut) if split == "test" else None
    png = out_dir / png_name(store_name, cut, split)
    source = best["run_id"] if best else None
    redraw = computed or not png.is_file() or prev is None or prev.get("mistakes_from") != source
    title, marked = (prev or {}).get("title"), (prev or {}).get("mistakes_marked")
    if redraw:
        mask, note = (mistakes_for(run_dir, best, ids) if split == "test"
                      else (None, "no test predictions for this split"))
        shown = ~np.isnan(coords[:, 0])
        sample = (f"all {n_total:,} points" if shown.all() else
                  f"SUBSAMPLE: {int(shown.sum()):,} of {n_total:,} points (stratified, seeded)")
        seed = (f"random_state={params['random_state']}" if params["random_state"] is not None
                else "unseeded, parallel")
        how = ""
        if params.get("fit_sample"):
            f = params["fit_sample"]
            pca = f" after PCA {f['width']}→{f['pca']}" if f["pca"] else ""
            how = (f"\nFITTED ON A SAMPLE: {f['points']:,} of {f['of']:,} points (stratified, "
                   f"seeded){pca}; the rest placed with UMAP.transform")
        title = (f"UMAP of {store_name} · cut {cut} · {split} split — {sample}\n"
                 f"n_neighbors={params['n_neighbors']}, min_dist={params['min_dist']}, {seed}"
                 f"{how}\n{note}")
        from report import plots
        labels = list(range(len(names))) if names else sorted(int(v) for v in np.unique(y))
        plots.umap_scatter(coords[shown], y[shown], labels,
                           [names[v] if 0 <= v < len(names) else str(v) for v in labels], png,
                           title, None if mask is None else mask[shown])
        marked = None if mask is None else int(mask[shown].sum())
    return {"store": store_name, "cut": cut, "split": split, "png": png.name,
            "n_points": int(params["n_points"]), "n_total": n_total, "computed": computed,
            "fit_sample": params.get("fit_sample"),
            "mistakes_from": source, "mistakes_marked": marked, "title": title,
            "params": params}


def export_projector(run_dir, cut, split="test", store_name="embeddings", chunk=4096) -> tuple:
    """TensorBoard projector files for one cut: ``projector/<store>_<cut>_<split>_{vectors,
    metadata}.tsv`` (metadata: id, label, class; header row). Written in row chunks so memory
    stays flat. Note the projector itself samples large inputs for display (BRIEF §11).
    """
    run_dir = Path(run_dir)
    paths = store_paths(run_dir)
    if store_name not in paths:
        raise FileNotFoundError(f"No {store_name}.h5 in {run_dir}. Available stores: "
                                f"{list(paths) or 'none'}; run `make extract` first.")
    path = paths[store_name]
    available = store.cuts(path)
    if cut not in available:
        raise ValueError(f"Unknown cut {cut!r} in {path}. Available: {list(available)}.")
    names = store.class_names(path)
    lo, hi = store.splits(path).get(split, (None, None))
    if lo is None:
        raise ValueError(f"Unknown split {split!r} in {path}. "
                         f"Available: {list(store.splits(path))}.")
    out = run_dir / rf.PROJECTOR
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{safe_name(store_name)}_{safe_name(cut)}_{safe_name(split)}"
    vec_path, meta_path = out / f"{stem}_vectors.tsv", out / f"{stem}_metadata.tsv"
    with open(vec_path, "w") as vf, open(meta_path, "w") as mf:
        mf.write("id\tlabel\tclass\n")
        for start in range(0, hi - lo, chunk):
            X, y, ids = store.read(path, cut, split, rows=(start, start + chunk))
            np.savetxt(vf, X, delimiter="\t", fmt="%.6g")
            for i, lab in zip(ids, y):
                name = names[lab] if 0 <= lab < len(names) else str(lab)
                mf.write(f"{str(i).replace(chr(9), ' ')}\t{int(lab)}\t{name}\n")
    return vec_path, meta_path
