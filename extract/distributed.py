"""Scale-out extraction on Dask (BRIEF §9): one task per shard of rows, one HDF5 shard per task.

Tasks receive plain values (the resolved config, paths, row bounds), never h5py objects or Keras
models (neither pickles, dask#6482): each worker loads the dataset view and the model itself —
once per worker, cached — and writes its own shard store, which resumes like any store. The client
then joins the shards in row order into the run's `embeddings.h5`. `workers=N` starts a
LocalCluster of N single-threaded processes; `scheduler="tcp://host:8786"` uses an existing
cluster (dask-jobqueue, Kubernetes), whose workers must see `run_dir` and the data.
"""
from __future__ import annotations

import json
import logging
import math
import time
from functools import lru_cache
from pathlib import Path

from cutpoint import runfolder as rf
from cutpoint.provenance import stable_json
from cutpoint.splits import prepare
from embeddings import store
from extract.plan import plan, run_rows

log = logging.getLogger("cutpoint.extract")


@lru_cache(maxsize=2)
def _worker_plan(cfg_json: str, weights: str):
    cfg = json.loads(cfg_json)
    return plan(cfg, weights, prepare(cfg))


def extract_shard(cfg_json: str, weights: str, shard_path: str, lo: int, hi: int, index: int):
    """Dask task: embed rows [lo, hi) of the plan's row order into `shard_path`."""
    p = _worker_plan(cfg_json, weights)
    return run_rows(p, json.loads(cfg_json), Path(shard_path), lo, hi,
                    {"shard": {"index": index, "rows": [lo, hi]}})


def extract_sharded(cfg, run_dir, weights, prepared, path: Path, workers: int = 2,
                    scheduler: str = "") -> dict:
    from dask.distributed import Client, LocalCluster

    if weights in ("none", "random", ""):
        raise ValueError(
            "Sharded extraction needs the same weights on every worker, but backbone.weights = "
            f"{weights!r} draws random weights in each worker process. Save them once "
            "(model.save_weights('init.weights.h5')) and pass that file as backbone.weights, or "
            "run without --workers.")
    p = plan(cfg, weights, prepared)  # the client's plan: the key and the row count
    n, key = len(p["order"]), p["key"]
    summary = {"store": str(path), "rows": n, "cuts": p["cuts_meta"], "extraction_key": key}
    if path.exists():
        try:
            if store.provenance(path).get("extraction_key") == key and store.is_complete(path):
                log.info("%s is up to date; nothing to do.", path)
                return dict(summary, skipped=True, seconds=0.0)
        except store.StoreError:
            pass
    n_shards = max(1, int(workers or 2))
    size = math.ceil(n / n_shards)
    bounds = [(i * size, min(n, (i + 1) * size)) for i in range(n_shards) if i * size < n]
    shard_dir = Path(run_dir) / rf.SHARDS
    shard_dir.mkdir(parents=True, exist_ok=True)
    shards = [str(shard_dir / f"embeddings.{key}.{i:04d}.h5") for i in range(len(bounds))]
    cfg_json = stable_json(cfg)
    cluster = None if scheduler else LocalCluster(n_workers=n_shards, threads_per_worker=1,
                                                  processes=True, dashboard_address=None)
    t0 = time.perf_counter()
    with Client(scheduler or cluster) as client:
        futures = [client.submit(extract_shard, cfg_json, weights, sp, lo, hi, i, pure=False)
                   for i, (sp, (lo, hi)) in enumerate(zip(shards, bounds))]
        parts = client.gather(futures)
    if cluster is not None:
        cluster.close()
    if path.exists():
        old = path.with_name(f"{path.stem}.replaced-{int(time.time())}{path.suffix}")
        path.rename(old)
        log.warning("Kept the previous store as %s.", old)
    store.join_shards(shards, path)
    for sp in shards:
        Path(sp).unlink()
    seconds = time.perf_counter() - t0
    return dict(summary, skipped=False, seconds=round(seconds, 2), shards=parts,
                images_per_second=round(n / max(seconds, 1e-9), 1))
