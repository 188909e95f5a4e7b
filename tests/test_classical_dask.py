"""The classical stage on Dask and out of core (classical/distributed.py, issue 14)."""
import json

import joblib
import numpy as np
import pytest

from classical import distributed
from classical.__main__ import predict, run
from cutpoint import config as cconfig
from cutpoint import results
from embeddings import store

CHUNK = 64


def _store(path, n_train=900, n_test=300, width=16, seed=0):
    """Three overlapping blobs (accuracy well above chance, below 1), chunked by CHUNK rows."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = rng.integers(0, 3, n)
    centers = np.random.default_rng(7).normal(0, 1.0, size=(3, width))
    X = (centers[y] + rng.normal(size=(n, width))).astype(np.float32)
    n_val = n_train // 5
    splits = ["train"] * (n_train - n_val) + ["val"] * n_val + ["test"] * n_test
    store.create(path, ids=[f"s{i}" for i in range(n)], labels=y, splits=splits,
                 class_names=["a", "b", "c"], chunk_rows=CHUNK,
                 cuts={"fc": {"width": width, "layer": "fc", "pooling": "avg"}},
                 provenance={"extraction_key": "k", "backbone": "small_vgg", "weights": "w"})
    store.write_rows(path, 0, {"fc": X})
    return y


def _cfg(*sets):
    return cconfig.load(None, ["classical.bootstrap=50", "classical.n_jobs=2", *sets])


def _rows(run_dir):
    return {r["classifier"]: r for r in results.read(run_dir / "results.csv")}


@pytest.fixture(scope="module")
def thread_client():
    """A LocalCluster of 2 single-threaded in-process workers (fast to start)."""
    from dask.distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def _two_runs(tmp_path, cfg, client, classifiers):
    """The same store classified in this process and on `client`: (rows, rows, Dask tasks)."""
    from dask.distributed import get_task_stream
    single, on_dask = tmp_path / "single", tmp_path / "dask"
    for d in (single, on_dask):
        d.mkdir()
        _store(d / "embeddings.h5")
    assert run(cfg, single, classifiers, progress=False)["failed"] == 0
    with get_task_stream(client) as ts:
        assert run(cfg, on_dask, classifiers, progress=False, client=client)["failed"] == 0
    return _rows(single), _rows(on_dask), ts.data


def test_dask_search_selects_and_scores_exactly_like_one_process(tmp_path, thread_client):
    names = ["logreg", "linear_svm", "knn"]
    one, dask, tasks = _two_runs(tmp_path, _cfg(), thread_client, names)
    assert tasks, "no grid point ran on the Dask workers"
    for n in names:
        a, b = one[n], dask[n]
        assert json.loads(a["best_params"]) == json.loads(b["best_params"])
        assert (a["val_accuracy"], a["accuracy"]) == (b["val_accuracy"], b["accuracy"])
        assert a["run_id"] == b["run_id"]        # the same run: a Dask re-run skips it
        assert "val split" in b["selection"] and "Dask scheduler" in b["notes"]
        assert "single process" in a["notes"]
        assert 0.5 < a["accuracy"] < 1.0         # a real problem, not a trivial one


def test_streamed_logreg_reads_chunks_only_and_equals_on_dask(tmp_path, thread_client,
                                                              monkeypatch):
    biggest = []
    read = store.read

    def spy(path, cut, split=None, rows=None, **kw):
        X, y, ids = read(path, cut, split, rows, **kw)
        biggest.append(len(X))
        return X, y, ids
    monkeypatch.setattr(store, "read", spy)
    cfg = _cfg("classical.max_in_memory_mb=0.01")    # the 1200 x 16 cut is 0.07 MB
    one, dask, tasks = _two_runs(tmp_path, cfg, thread_client, ["logreg"])
    assert tasks and max(biggest) <= CHUNK           # never more than one chunk in memory
    a, b = one["logreg"], dask["logreg"]
    assert "sgd-stream" in a["notes"] and "sgd-stream" in b["notes"]
    assert json.loads(a["best_params"]) == json.loads(b["best_params"])
    assert set(json.loads(a["best_params"])) == {"clf__alpha"}
    assert (a["val_accuracy"], a["accuracy"]) == (b["val_accuracy"], b["accuracy"])
    assert a["accuracy"] > 0.6 and a["n_train"] == 900 and a["n_val"] == 180
    assert a["log_loss"] > 0                         # probabilities are saved and scored


def test_streamed_logreg_is_close_to_lbfgs_logreg(tmp_path):
    """Same data, in memory (L-BFGS, Kornblith's C grid) vs streamed (SGD, alpha grid)."""
    for d, sets in (("mem", []), ("sgd", ["classical.max_in_memory_mb=0.01"])):
        (tmp_path / d).mkdir()
        _store(tmp_path / d / "embeddings.h5")
        assert run(_cfg(*sets), tmp_path / d, ["logreg"], progress=False)["failed"] == 0
    mem, sgd = _rows(tmp_path / "mem")["logreg"], _rows(tmp_path / "sgd")["logreg"]
    assert abs(mem["accuracy"] - sgd["accuracy"]) <= 0.03


def test_a_classifier_without_an_out_of_core_engine_is_refused_with_the_fix(tmp_path):
    (tmp_path / "r").mkdir()
    _store(tmp_path / "r" / "embeddings.h5")
    summary = run(_cfg("classical.max_in_memory_mb=0.01"), tmp_path / "r", ["knn"],
                  progress=False)
    (failed,) = summary["runs"]
    assert failed["status"] == "failed"
    assert "classical.max_in_memory_mb = 0.01" in failed["error"]
    assert "CLASSIFIERS=logreg,xgboost" in failed["error"] and "[classical]" in failed["error"]


@pytest.mark.slow
def test_xgboost_across_two_worker_processes_is_within_tolerance(tmp_path):
    """XGBoost's collective needs one process per rank: a LocalCluster of 2 processes. The
    distributed sketch may change the model: test accuracy within XGB_TOLERANCE."""
    single, on_dask, ext = tmp_path / "single", tmp_path / "dask", tmp_path / "ext"
    for d in (single, on_dask, ext):
        d.mkdir()
        _store(d / "embeddings.h5")
    assert run(_cfg(), single, ["xgboost"], progress=False)["failed"] == 0
    assert run(_cfg(), on_dask, ["xgboost"], progress=False, workers=2)["failed"] == 0
    assert run(_cfg("classical.max_in_memory_mb=0.01"), ext, ["xgboost"],
               progress=False)["failed"] == 0
    a, b, c = (_rows(d)["xgboost"] for d in (single, on_dask, ext))
    assert "engine in-memory" in a["notes"]
    assert "2 Dask worker(s)" in b["notes"] and "2 worker(s)" in b["notes"]
    assert "ExtMemQuantileDMatrix" in c["notes"]
    assert a["run_id"] != b["run_id"]                # another engine: another run
    for r in (b, c):
        assert abs(r["accuracy"] - a["accuracy"]) <= distributed.XGB_TOLERANCE
        assert abs(r["val_accuracy"] - a["val_accuracy"]) <= distributed.XGB_TOLERANCE
        assert set(json.loads(r["best_params"])) == set(json.loads(a["best_params"]))
    # The saved model is an ordinary bundle: `predict` applies it, labels come back decoded.
    bundle = joblib.load(on_dask / b["model"])
    assert bundle["label_encoder"].classes_.tolist() == [0, 1, 2]
    out = tmp_path / "preds.csv"
    assert predict(on_dask / b["model"], on_dask / "embeddings.h5", out) == 300
    saved = np.load(on_dask / b["predictions"])
    pred = np.loadtxt(out, delimiter=",", skiprows=1, usecols=1, dtype=int)
    assert np.array_equal(pred, saved["y_pred"])
    assert np.mean(saved["y_pred"] == saved["y_true"]) == pytest.approx(b["accuracy"])
