"""UMAP at scale (report/umap_stage.py): a sampled fit, the rest transformed chunk by chunk."""
import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from cutpoint import config
from cutpoint.provenance import hash_arrays
from embeddings import store
from report import run_umap
from report.umap_stage import stratified_subsample

CHUNK = 50


def _run_dir(tmp_path, n=600, width=64):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    centers = np.random.default_rng(1).normal(0, 4, size=(3, width))
    X = (centers[y] + rng.normal(size=(n, width))).astype(np.float32)
    run_dir = tmp_path / "exp"
    run_dir.mkdir()
    store.create(run_dir / "embeddings.h5", ids=[f"s{i}" for i in range(n)], labels=y,
                 splits=["test"] * n, class_names=["a", "b", "c"], chunk_rows=CHUNK,
                 cuts={"fc": {"width": width, "layer": "fc", "pooling": "avg"}},
                 provenance={"backbone": "small_vgg"}, split_order=("test",))
    store.write_rows(run_dir / "embeddings.h5", 0, {"fc": X})
    return run_dir, y


@pytest.mark.slow
def test_above_fit_points_umap_fits_a_sample_and_transforms_the_rest_in_chunks(tmp_path,
                                                                              monkeypatch):
    run_dir, y = _run_dir(tmp_path)
    reads = []
    read = store.read

    def spy(path, cut, split=None, rows=None, **kw):
        out = read(path, cut, split, rows, **kw)
        reads.append(len(out[0]))
        return out
    monkeypatch.setattr(store, "read", spy)
    cfg = config.load(None, ["umap.fit_points=150", "umap.pca_dims=8",
                             f"umap.transform_chunk={CHUNK}", "umap.n_neighbors=10"])
    (entry,) = run_umap(run_dir, cfg, log=lambda *_: None)["entries"]
    assert reads and max(reads) <= CHUNK             # the split's matrix is never read whole
    coords, params = store.read_umap(run_dir / "embeddings.h5", "fc", "test")
    assert np.isfinite(coords).all()                 # every point placed
    fit = params["fit_sample"]
    assert 140 <= fit["points"] <= 160 and fit["of"] == 600 and fit["pca"] == 8
    assert params["low_memory"] is True and entry["fit_sample"] == fit
    assert "FITTED ON A SAMPLE" in entry["title"] and "PCA 64→8" in entry["title"]
    assert "UMAP.transform" in entry["title"]
    # Transformed points land among the fitted points of their own class.
    fitted = np.zeros(len(y), bool)
    fitted[stratified_subsample(y, 150, 0)] = True       # the stage's seeded sample
    knn = KNeighborsClassifier(5).fit(coords[fitted], y[fitted])
    assert knn.score(coords[~fitted], y[~fitted]) > 0.95


def test_below_fit_points_every_point_is_fitted_as_before(tmp_path):
    run_dir, _ = _run_dir(tmp_path, n=120)
    cfg = config.load(None, ["umap.fit_points=500", "umap.n_neighbors=10"])
    (entry,) = run_umap(run_dir, cfg, log=lambda *_: None)["entries"]
    _, params = store.read_umap(run_dir / "embeddings.h5", "fc", "test")
    assert "fit_sample" not in params and entry["fit_sample"] is None
    assert "SAMPLE" not in entry["title"]
    # The data hash, now streamed chunk by chunk, is the digest of the whole arrays as before.
    X, y, ids = store.read(run_dir / "embeddings.h5", "fc", "test")
    assert params["data_hash"] == hash_arrays(X, y, np.asarray(ids).astype("U"))
