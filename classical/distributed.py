"""The classical stage across Dask workers and past one machine's memory (BRIEF §9, issue 14).

`classical.__main__.run` picks an engine per (cut, classifier) with `engine_for`:

``in-memory``  The cut's rows fit in ``classical.max_in_memory_mb``: `protocol.fit_select`, as on
    one machine. With a Dask client its grid search runs through joblib's dask backend
    (`protocol.search_on_dask`, the fit and val arrays scattered once, joblib#1154): the same fits,
    hence the same selected hyperparameters and test accuracy as a single-process run (tested).
``sgd-stream``  logreg above the limit. L-BFGS needs the whole matrix in memory; SGD needs one
    chunk: ``SGDClassifier(loss="log_loss", average=True)`` (logistic regression, one-vs-rest,
    averaged SGD) fitted with `partial_fit` over row chunks read from the store, after a streamed
    `StandardScaler` (`partial_fit` too). `SGD_EPOCHS` passes, chunk order and rows within a chunk shuffled with
    the seed; the L2 penalty alpha (≈ 1 / (C · n)) is chosen on the val split from `SGD_ALPHAS`.
    Each alpha is one Dask task that streams the store itself (only the path travels), or one
    loop step without a client: the same numbers either way (tested). Memory: one chunk.
``xgb-collective``  xgboost with a Dask client, or above the limit. xgboost.dask is not used: it
    imports dask.dataframe, which needs pyarrow (not in requirements.txt), and it holds every
    partition in worker memory. Instead each worker task reads its contiguous share of the rows
    chunk by chunk through an `xgboost.DataIter` and they train one booster together through
    XGBoost's collective (`RabitTracker` + `CommunicatorContext`: what xgboost.dask does
    underneath). Above the limit the matrix is an `ExtMemQuantileDMatrix` (quantised pages cached
    on the worker's local disk): a worker holds a chunk, the histograms and per-row state
    (gradients, predictions; `make bench` section `scale` measured +0.9 KB per row at width 512,
    against 2 KB per row for the float32 matrix). Histogram bins are sketched per worker and merged, so the model is not bit-identical
    to a single-process one: tests hold it to `XGB_TOLERANCE`. The n_estimators grid is scored
    by truncating one booster per max_depth, as on one machine.

Validation and test rows are scored chunk by chunk on the client. Selection uses the stored val
split only; the refit uses train + val (contiguous rows of the store); test is scored once.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time

import numpy as np

from classical import pipelines, protocol
from cutpoint.metrics import classification_metrics
from embeddings import store

ENGINES = ("in-memory", "sgd-stream", "xgb-collective")
SGD_ALPHAS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
SGD_EPOCHS = 5
XGB_TOLERANCE = 0.03      # |test accuracy - single-process test accuracy| allowed for xgb-collective
OUT_OF_CORE = ("logreg", "xgboost")


# ----------------------------------------------------------------------------- clients

@contextlib.contextmanager
def client_for(workers: int = 0, scheduler: str = "", processes: bool = True):
    """A dask.distributed Client for the block, or None when neither is given: `scheduler`
    (an existing cluster's address, e.g. dask-jobqueue's) or a LocalCluster of `workers`
    single-threaded processes (threads for processes=False, as tests use)."""
    if not workers and not scheduler:
        yield None
        return
    from dask.distributed import Client, LocalCluster
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    if int(workers) < 1:
        raise ValueError(f"--workers must be an integer >= 1. Got {workers!r} instead.")
    with LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=processes,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


def describe(client) -> str:
    """Where the runs execute, for the results row's notes."""
    if client is None:
        return "single process"
    info = client.scheduler_info()
    workers = info.get("workers", {})
    threads = sum(w.get("nthreads", 1) for w in workers.values())
    return (f"Dask scheduler {client.scheduler.address}: {len(workers)} worker(s), "
            f"{threads} thread(s)")


def _n_workers(client) -> int:
    return len(client.scheduler_info().get("workers", {})) if client is not None else 1


# ----------------------------------------------------------------------------- engine choice

def cut_megabytes(path, cut) -> float:
    """Size of the cut's train + val + test rows as float32: what in-memory loading holds."""
    width = int(store.cuts(path)[cut]["width"])
    rows = sum(b - a for s, (a, b) in store.splits(path).items() if s in ("train", "val", "test"))
    return rows * width * 4 / 2 ** 20


def engine_for(name: str, megabytes: float, limit_mb: float, client) -> str:
    """The engine of one (cut, classifier): see the module docstring. Refuses a classifier that
    has no out-of-core engine when the cut is above the limit."""
    over = limit_mb > 0 and megabytes > limit_mb
    if name == "xgboost" and (client is not None or over):
        return "xgb-collective"
    if not over:
        return "in-memory"
    if name == "logreg":
        return "sgd-stream"
    raise ValueError(f"{name}: this cut's rows take {megabytes:.0f} MB as float32, above "
                     f"classical.max_in_memory_mb = {limit_mb:g}; out of core only "
                     f"{' and '.join(OUT_OF_CORE)} run (streamed SGD, external-memory XGBoost). "
                     f"Restrict the classifiers (`make classify CLASSIFIERS=logreg,xgboost`) or, "
                     f"on a machine with the memory, raise max_in_memory_mb in the [classical] "
                     f"section of the experiment's config.")


def engine_identity(engine: str, client, external: bool) -> dict:
    """What an engine adds to a run's id: results of another engine (or, for XGBoost, another
    worker count or data matrix: the sketch differs) are other runs, never silently reused."""
    if engine == "in-memory":
        return {}
    if engine == "sgd-stream":
        return {"engine": engine, "alphas": SGD_ALPHAS, "epochs": SGD_EPOCHS}
    return {"engine": engine, "workers": _n_workers(client), "external_memory": bool(external)}


def _run_tasks(client, fn, argsets: list) -> list:
    """fn(*args) for each args: Dask tasks (paths travel, never h5py objects) or a local loop."""
    if client is None:
        return [fn(*a) for a in argsets]
    return client.gather([client.submit(fn, *a, pure=False) for a in argsets])


# ----------------------------------------------------------------------------- streaming helpers

def _blocks(lo: int, hi: int, chunk: int) -> list:
    return [(a, min(hi, a + chunk)) for a in range(lo, hi, chunk)]


def _chunk_rows(path) -> int:
    return int(store.root_attrs(path).get("chunk_rows", 4096))


def _labels(path, split) -> np.ndarray:
    return store.labels(path, split)


def _stream_accuracy(predict, path, cut, lo, hi, chunk) -> float:
    right = total = 0
    for a, b in _blocks(lo, hi, chunk):
        X, y, _ = store.read(path, cut, rows=(a, b))
        right += int(np.sum(predict(X) == y))
        total += len(y)
    return right / max(total, 1)


def evaluate_streaming(model, path, cut, class_names, n_boot=1000, seed=0) -> tuple:
    """`protocol.evaluate` on the test split read chunk by chunk: (metrics, y_test, ids)."""
    preds, probas, ys, ids, seconds = [], [], [], [], 0.0
    for X, y, i in store.iter_chunks(path, cut, "test"):
        pred, proba, s = protocol.predict_with_proba(model, X)
        preds.append(pred), probas.append(proba), ys.append(y), ids.append(i)
        seconds += s
    y, pred, proba = np.concatenate(ys), np.concatenate(preds), np.concatenate(probas)
    labels = np.asarray(model.classes_)
    missing = np.setdiff1d(np.unique(y), labels)
    if len(missing):
        raise ValueError(f"Class(es) {missing.tolist()} appear in the test split but the model "
                         f"was trained on {labels.tolist()} only.")
    out = classification_metrics(y, pred, proba=proba if proba.size else None, labels=labels,
                                 class_names=protocol._class_names_for(labels, class_names),
                                 n_boot=n_boot, seed=seed)
    out.update(y_pred=pred, proba=proba, predict_seconds=seconds, classes=labels)
    return out, y, np.concatenate(ids)


# ----------------------------------------------------------------------------- SGD (logreg)

def sgd_fit(path, cut, lo, hi, alpha, classes, seed, epochs=SGD_EPOCHS, chunk=None):
    """Scaler + SGD logistic regression fitted on rows [lo, hi) of the store, one chunk at a
    time. A Dask task: takes a path, returns a small fitted Pipeline."""
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    chunk = int(chunk or _chunk_rows(path))
    blocks = _blocks(lo, hi, chunk)
    scaler = StandardScaler()
    for a, b in blocks:
        scaler.partial_fit(store.read(path, cut, rows=(a, b))[0])
    # Averaged SGD (Polyak): the plain iterate's last steps are noisy enough to swing the
    # selection by several points on small splits; the average is not.
    clf = SGDClassifier(loss="log_loss", alpha=alpha, average=True, random_state=seed)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for k in rng.permutation(len(blocks)):
            X, y, _ = store.read(path, cut, rows=blocks[k])
            order = rng.permutation(len(y))
            clf.partial_fit(scaler.transform(X)[order], y[order], classes=classes)
    return Pipeline([("scale", scaler), (pipelines.CLF, clf)])


def sgd_grid_point(path, cut, fit_rows, val_rows, alpha, classes, seed, epochs, chunk) -> float:
    """Validation accuracy of one alpha (a Dask task)."""
    model = sgd_fit(path, cut, *fit_rows, alpha, classes, seed, epochs, chunk)
    return _stream_accuracy(model.predict, path, cut, *val_rows, chunk)


def _fit_sgd(path, cut, client, seed, chunk, alphas=SGD_ALPHAS, epochs=SGD_EPOCHS):
    bounds = store.splits(path)
    tr, va = bounds["train"], bounds["val"]
    classes = np.unique(_labels(path, "train"))
    t0 = time.perf_counter()
    scores = _run_tasks(client, sgd_grid_point,
                        [(str(path), cut, tr, va, a, classes, seed, epochs, chunk)
                         for a in alphas])
    search_s = time.perf_counter() - t0
    best = int(np.argmax(scores))        # ties: the first, the strongest penalty
    t1 = time.perf_counter()
    model = _run_tasks(client, sgd_fit, [(str(path), cut, tr[0], va[1], alphas[best], classes,
                                          seed, epochs, chunk)])[0]
    refit_s = time.perf_counter() - t1
    notes = (f"Out of core (engine sgd-stream): SGDClassifier(loss='log_loss', average=True) "
             f"one-vs-rest "
             f"logistic regression, {epochs} passes of partial_fit over {chunk}-row chunks "
             f"(seeded chunk and row order) after a streamed StandardScaler; L-BFGS would need "
             f"the whole matrix in memory.")
    params = [{"clf__alpha": a} for a in alphas]
    return model, _info(params, scores, best, search_s, refit_s, notes,
                        n_train=va[1] - tr[0], n_val=va[1] - va[0], n_fit=tr[1] - tr[0],
                        n_features=int(store.cuts(path)[cut]["width"]))


def _info(grid, scores, best, search_s, refit_s, notes, **sizes) -> dict:
    return {"best_params": dict(grid[best]),
            "val_scores": [{"params": p, "val_accuracy": s} for p, s in zip(grid, scores)],
            "best_val_accuracy": float(scores[best]), "selection": protocol.SELECTION_RULE,
            "search_seconds": search_s, "refit_seconds": refit_s,
            "fit_seconds": search_s + refit_s, "notes": notes, **sizes}


# ----------------------------------------------------------------------------- XGBoost

def _store_iter(path, cut, lo, hi, classes, chunk, cache_prefix):
    """An xgboost.DataIter over rows [lo, hi) of the store, labels encoded to 0..K-1."""
    import xgboost as xgb

    class StoreIter(xgb.DataIter):
        def __init__(self):
            self._blocks, self._i = _blocks(lo, hi, chunk), 0
            super().__init__(cache_prefix=cache_prefix, release_data=True, on_host=False)

        def next(self, input_data):
            if self._i == len(self._blocks):
                return False
            X, y, _ = store.read(path, cut, rows=self._blocks[self._i])
            code = np.searchsorted(classes, y)
            if np.any(code >= len(classes)) or np.any(classes[np.minimum(
                    code, len(classes) - 1)] != y):
                raise ValueError(f"{path}: rows {self._blocks[self._i]} hold labels outside "
                                 f"the train split's classes {classes.tolist()}.")
            input_data(data=X, label=code)
            self._i += 1
            return True

        def reset(self):
            self._i = 0

    return StoreIter()


def xgb_train(path, cut, lo, hi, classes, params, rounds, external, chunk, coll_args=None):
    """One rank of a (possibly one-rank) XGBoost training on rows [lo, hi): a Dask task.
    Returns the booster's UBJSON bytes (every rank ends with the same model)."""
    import xgboost as xgb
    from xgboost import collective

    tmp = tempfile.mkdtemp(prefix="cutpoint-xgb-") if external else None
    try:
        it = _store_iter(str(path), cut, lo, hi, np.asarray(classes), int(chunk),
                         os.path.join(tmp, "cache") if tmp else None)
        ctx = collective.CommunicatorContext(**coll_args) if coll_args else contextlib.nullcontext()
        with ctx:
            kind = xgb.ExtMemQuantileDMatrix if external else xgb.QuantileDMatrix
            dm = kind(it, max_bin=params.get("max_bin"), nthread=params.get("nthread"))
            booster = xgb.train(params, dm, num_boost_round=int(rounds))
        return bytes(booster.save_raw("ubj"))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _train_distributed(client, path, cut, lo, hi, classes, params, rounds, external, chunk):
    """Rows [lo, hi) cut into one contiguous share per worker; one booster trained together."""
    if client is None:
        return xgb_train(path, cut, lo, hi, classes, params, rounds, external, chunk)
    from distributed.comm import get_address_host
    from distributed.utils import get_ip
    from xgboost.tracker import RabitTracker

    addrs = sorted(client.scheduler_info()["workers"])
    n = min(len(addrs), max(1, hi - lo))
    edges = np.linspace(lo, hi, n + 1).astype(int)
    # The tracker listens in this process, on the interface that routes to the scheduler.
    host = get_ip(get_address_host(client.scheduler.address))
    tracker = RabitTracker(n_workers=n, host_ip=host, sortby="task")
    tracker.start()
    args = tracker.worker_args()
    futures = [client.submit(xgb_train, str(path), cut, int(edges[r]), int(edges[r + 1]),
                             classes, params, rounds, external, chunk,
                             dict(args, dmlc_task_id=f"cutpoint-{r:04d}"), workers=[addrs[r]],
                             allow_other_workers=False, pure=False)
               for r in range(n)]
    raw = client.gather(futures)[0]
    tracker.wait_for()
    return raw


def _booster_params(seed, n_jobs, depth, n_classes, threads):
    est = pipelines.make("xgboost", seed, n_jobs)[0][-1].estimator
    params = {k: v for k, v in est.get_xgb_params().items() if v is not None}
    params.update(max_depth=int(depth), n_jobs=int(threads))
    params.pop("n_jobs")
    params["nthread"] = int(threads)
    if n_classes > 2:
        params.update(objective="multi:softprob", num_class=int(n_classes))
    return params


def _xgb_model(raw: bytes, classes, width):
    """A fitted `pipelines.LabelEncodedClassifier` around the trained booster: saved and used
    for prediction like the single-process model."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import LabelEncoder
    from xgboost import XGBClassifier

    inner = XGBClassifier()
    inner.load_model(bytearray(raw))
    wrapper = pipelines.LabelEncodedClassifier(XGBClassifier())
    wrapper.label_encoder_ = LabelEncoder().fit(classes)
    wrapper.classes_, wrapper.estimator_ = wrapper.label_encoder_.classes_, inner
    wrapper.n_features_in_ = int(width)
    return Pipeline([(pipelines.CLF, wrapper)])


def _fit_xgb(path, cut, client, seed, n_jobs, chunk, external, grid=None):
    import xgboost as xgb

    bounds = store.splits(path)
    tr, va = bounds["train"], bounds["val"]
    classes = np.unique(_labels(path, "train"))
    width = int(store.cuts(path)[cut]["width"])
    grid = grid or pipelines.make("xgboost", seed, n_jobs)[1]
    depth_key, rounds_key = "clf__estimator__max_depth", "clf__estimator__n_estimators"
    threads = (min(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
               if client is not None else n_jobs)
    scores = [0.0] * len(grid)
    t0 = time.perf_counter()
    for depth in dict.fromkeys(p.get(depth_key, 6) for p in grid):
        idx = [i for i, p in enumerate(grid) if p.get(depth_key, 6) == depth]
        params = _booster_params(seed, n_jobs, depth, len(classes), threads)
        raw = _train_distributed(client, path, cut, *tr, classes, params,
                                 max(grid[i][rounds_key] for i in idx), external, chunk)
        booster = xgb.Booster(model_file=bytearray(raw))
        for i in idx:   # fewer rounds scored by truncation: the model fewer rounds would grow
            r = grid[i][rounds_key]

            def predict(X, r=r):
                p = booster.predict(xgb.DMatrix(X), iteration_range=(0, r))
                code = np.argmax(p, axis=1) if p.ndim == 2 else (p > 0.5).astype(int)
                return classes[code]
            scores[i] = _stream_accuracy(predict, path, cut, *va, chunk)
    search_s = time.perf_counter() - t0
    best = int(np.argmax(scores))
    t1 = time.perf_counter()
    params = _booster_params(seed, n_jobs, grid[best].get(depth_key, 6), len(classes), threads)
    raw = _train_distributed(client, path, cut, tr[0], va[1], classes, params,
                             grid[best][rounds_key], external, chunk)
    refit_s = time.perf_counter() - t1
    matrix = ("ExtMemQuantileDMatrix, pages cached on local disk" if external
              else "QuantileDMatrix")
    who = (f"{_n_workers(client)} Dask worker(s) through XGBoost's collective (bins sketched "
           f"per worker and merged), each reading its share" if client is not None
           else "this process, reading the rows")
    notes = f"Engine xgb-collective: one booster trained by {who} in {chunk}-row chunks ({matrix})."
    return _xgb_model(raw, classes, width), _info(
        grid, scores, best, search_s, refit_s, notes, n_train=va[1] - tr[0],
        n_val=va[1] - va[0], n_fit=tr[1] - tr[0], n_features=width)


# ----------------------------------------------------------------------------- entry point

def fit_out_of_core(engine, name, cfg, path, cut, class_names, client, *, grid=None) -> tuple:
    """(model, info, metrics, y_test, test ids) of one (cut, classifier) by a streaming engine.
    `grid` overrides the registry grid (benchmarks use a short one)."""
    ccfg, seed = cfg["classical"], cfg["experiment"]["seed"]
    chunk = _chunk_rows(path)
    over = cut_megabytes(path, cut) > ccfg["max_in_memory_mb"] > 0
    if engine == "sgd-stream":
        model, info = _fit_sgd(path, cut, client, seed, chunk,
                               **({"alphas": tuple(g["clf__alpha"] for g in grid)} if grid else {}))
    elif engine == "xgb-collective":
        model, info = _fit_xgb(path, cut, client, seed, ccfg["n_jobs"], chunk, over, grid)
    else:
        raise ValueError(f"Unknown engine {engine!r}. Available: {', '.join(ENGINES[1:])}.")
    ev, y_test, ids = evaluate_streaming(model, path, cut, class_names, ccfg["bootstrap"], seed)
    return model, info, ev, y_test, ids
