"""The HDF5 embedding store: round trips, resumable writes, refusals with clear messages, shards."""
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from embeddings import store
from embeddings.store import StoreError

ROOT = Path(__file__).resolve().parent.parent
IDS = ["img-0", "échantillon-1", "样本-2", "naïve-3", "img-4", "😀-5", "img-6", "img-7", "img-8",
       "img-9"]
SPLITS = ["train"] * 5 + ["val"] * 2 + ["test"] * 3
LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
CLASSES = ["Sandale", "Hemd", "Stiefelette"]
CUTS = {"block1": {"width": 4, "layer": "block1_pool", "pooling": "avg", "stride": 2,
                   "shape_before_pool": [14, 14, 4]},
        "block2": {"width": 6, "layer": "block2_pool", "pooling": "avgmax"}}
PROV = {"backbone": "small_vgg", "weights": {"source": "self", "sha256": "ab12"}, "seed": 0}


def _data(n=10, seed=0):
    rng = np.random.default_rng(seed)
    return {c: rng.normal(size=(n, spec["width"])).astype(np.float32) for c, spec in CUTS.items()}


def _create(path, ids=IDS, labels=LABELS, splits=SPLITS, **kw):
    kw.setdefault("provenance", PROV)
    store.create(path, ids=ids, labels=labels, splits=splits, class_names=CLASSES, cuts=CUTS, **kw)


def _write_all(path, data, block):
    n = len(next(iter(data.values())))
    for start in range(store.rows_done(path), n, block):
        store.write_rows(path, start, {c: a[start:start + block] for c, a in data.items()})


def _content(path, skip_attrs=("created",)):
    """Every dataset's bytes and every attribute, by HDF5 path: the store's full content."""
    out = {}
    with h5py.File(path, "r") as f:
        out["/"] = {k: v for k, v in f.attrs.items() if k not in skip_attrs}

        def visit(name, obj):
            attrs = dict(obj.attrs)
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                raw = (data.tobytes() if data.dtype.kind != "O" else repr(data.tolist()))
                out[name] = (obj.dtype.str, obj.shape, raw, attrs)
            else:
                out[name] = attrs
        f.visititems(visit)
    return out


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert repr(a[k]) == repr(b[k]), k


@pytest.fixture
def full(tmp_path):
    path = tmp_path / "emb.h5"
    data = _data()
    _create(path)
    _write_all(path, data, block=4)
    return path, data


def test_round_trip_samples_classes_splits_attrs(full):
    path, data = full
    smp = store.read_samples(path)
    assert list(smp["ids"]) == IDS
    assert all(isinstance(i, str) for i in smp["ids"])
    assert smp["labels"].dtype == np.int64 and smp["labels"].tolist() == LABELS.tolist()
    assert list(smp["splits"]) == SPLITS
    assert store.class_names(path) == CLASSES
    assert store.splits(path) == {"train": (0, 5), "val": (5, 7), "test": (7, 10)}
    assert store.provenance(path) == PROV
    meta = store.root_attrs(path)
    assert meta["format"] == "cutpoint-embeddings" and meta["format_version"] == 1
    assert meta["samples_hash"] == store.samples_hash(IDS, LABELS, SPLITS)
    assert meta["samples_hash"] != store.samples_hash(IDS[::-1], LABELS[::-1], SPLITS)
    c = store.cuts(path)
    assert list(c) == ["block1", "block2"]
    assert c["block1"]["layer"] == "block1_pool" and c["block2"]["pooling"] == "avgmax"
    assert c["block1"]["width"] == 4 and c["block1"]["stride"] == 2
    assert c["block1"]["shape_before_pool"] == [14, 14, 4]
    assert c["block1"]["rows_done"] == 10 and c["block1"]["complete"]
    assert store.is_complete(path)
    X, y, ids = store.read(path, "block2")
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X, data["block2"])
    assert y.tolist() == LABELS.tolist() and list(ids) == IDS


def test_float16_storage_reads_back_as_float32(tmp_path):
    path = tmp_path / "half.h5"
    data = _data()
    _create(path, dtype="float16", compression="gzip")
    _write_all(path, data, block=3)
    assert store.cuts(path)["block1"]["dtype"] == "float16"
    assert store.cuts(path)["block1"]["compression"] == "gzip"
    X, _, _ = store.read(path, "block1")
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X, data["block1"].astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(X, data["block1"], rtol=1e-3, atol=1e-3)
    X16, _, _ = store.read(path, "block1", dtype=None)
    assert X16.dtype == np.float16


def test_float16_overflow_and_nan_refused(tmp_path):
    path = tmp_path / "half.h5"
    _create(path, dtype="float16")
    data = _data()
    data["block1"][1, 0] = 1e6
    with pytest.raises(StoreError, match="overflow float16"):
        store.write_rows(path, 0, data)
    data = _data()
    data["block2"][3, 2] = np.nan
    with pytest.raises(StoreError, match="row 3 has NaN"):
        store.write_rows(path, 0, data)
    assert store.rows_done(path) == 0


def test_read_one_split_is_its_contiguous_rows(full):
    path, data = full
    X, y, ids = store.read(path, "block1", split="val")
    np.testing.assert_array_equal(X, data["block1"][5:7])
    assert list(ids) == IDS[5:7] and y.tolist() == LABELS[5:7].tolist()
    X, y, ids = store.read(path, "block1", split="test", rows=slice(1, 3))
    np.testing.assert_array_equal(X, data["block1"][8:10])
    assert list(ids) == IDS[8:10]
    X, _, ids = store.read(path, "block2", rows=(2, 6))
    np.testing.assert_array_equal(X, data["block2"][2:6])
    assert store.read_samples(path, split="test")["ids"].tolist() == IDS[7:]
    with pytest.raises(StoreError, match="unknown split 'tset'.*Did you mean 'test'"):
        store.read(path, "block1", split="tset")


def test_append_in_chunks_equals_one_write(tmp_path):
    data = _data()
    one, many = tmp_path / "one.h5", tmp_path / "many.h5"
    _create(one)
    assert store.write_rows(one, 0, data) == 10
    _create(many)
    for start, stop in [(0, 1), (1, 4), (4, 4), (4, 9), (9, 10)]:
        assert store.write_rows(many, start, {c: a[start:stop] for c, a in data.items()}) == stop
    _same(_content(one), _content(many))


def test_crash_between_data_and_rows_done_resumes_identically(tmp_path, monkeypatch):
    data = _data()
    ref, crashed = tmp_path / "ref.h5", tmp_path / "crashed.h5"
    _create(ref)
    _write_all(ref, data, block=3)
    _create(crashed)
    store.write_rows(crashed, 0, {c: a[:3] for c, a in data.items()})

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash after the data flush")
    with monkeypatch.context() as m:
        m.setattr(store, "_mark_rows_done", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            store.write_rows(crashed, 3, {c: a[3:6] for c, a in data.items()})
    assert store.rows_done(crashed) == 3      # the marker did not move: rows 3..5 get rewritten
    with h5py.File(crashed, "r") as f:        # … although their data did reach the file
        np.testing.assert_array_equal(f["cuts/block2"][3:6], data["block2"][3:6])
    assert not store.is_complete(crashed)
    with pytest.raises(StoreError, match="incomplete.*3 of 10"):
        store.read(crashed, "block1")
    X, _, ids = store.read(crashed, "block1", allow_partial=True)
    np.testing.assert_array_equal(X, data["block1"][:3])
    _write_all(crashed, data, block=3)
    _same(_content(ref), _content(crashed))


def test_killed_process_resumes_identically(tmp_path):
    """A writer process dies (os._exit, no cleanup) between its data flush and rows_done."""
    data = _data()
    np.savez(tmp_path / "data.npz", **data)
    ref, crashed = tmp_path / "ref.h5", tmp_path / "crashed.h5"
    _create(ref)
    _write_all(ref, data, block=4)
    _create(crashed)
    script = textwrap.dedent(f"""
        import os, numpy as np
        from embeddings import store
        data = dict(np.load({str(tmp_path / 'data.npz')!r}))
        path = {str(crashed)!r}
        store.write_rows(path, 0, {{c: a[:4] for c, a in data.items()}})
        store._mark_rows_done = lambda *a: os._exit(9)
        store.write_rows(path, 4, {{c: a[4:8] for c, a in data.items()}})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 9, proc.stderr
    assert store.rows_done(crashed) == 4
    with h5py.File(crashed, "r") as f:
        np.testing.assert_array_equal(f["cuts/block1"][4:8], data["block1"][4:8])
    _write_all(crashed, data, block=4)
    _same(_content(ref), _content(crashed))


def test_out_of_order_and_malformed_writes_refused(tmp_path):
    path = tmp_path / "emb.h5"
    data = _data()
    _create(path)
    with pytest.raises(StoreError, match="start=5 but .* rows_done=0.*gap"):
        store.write_rows(path, 5, {c: a[5:7] for c, a in data.items()})
    store.write_rows(path, 0, {c: a[:5] for c, a in data.items()})
    with pytest.raises(StoreError, match="overlap"):
        store.write_rows(path, 2, {c: a[2:7] for c, a in data.items()})
    with pytest.raises(StoreError, match=r"every cut at once; missing \['block2'\]"):
        store.write_rows(path, 5, {"block1": data["block1"][5:7]})
    with pytest.raises(StoreError, match="unknown cut.*Did you mean 'block2'"):
        store.write_rows(path, 5, {"block1": data["block1"][5:7], "blok2": data["block2"][5:7]})
    with pytest.raises(StoreError, match=r"shape \(rows, 6\)"):
        store.write_rows(path, 5, {"block1": data["block1"][5:7], "block2": data["block1"][5:7]})
    with pytest.raises(StoreError, match="same number of rows"):
        store.write_rows(path, 5, {"block1": data["block1"][5:7], "block2": data["block2"][5:8]})
    with pytest.raises(StoreError, match="exceed the store's 10 samples"):
        store.write_rows(path, 5, {c: np.zeros((6, a.shape[1])) for c, a in data.items()})
    assert store.rows_done(path) == 5


def test_create_refuses_bad_input(tmp_path):
    path = tmp_path / "emb.h5"
    shuffled = ["train", "val", "train", "test"]
    with pytest.raises(StoreError, match="contiguous.*split_order_index"):
        _create(path, ids=IDS[:4], labels=LABELS[:4], splits=shuffled)
    order = store.split_order_index(shuffled)
    assert [shuffled[i] for i in order] == ["train", "train", "val", "test"]
    with pytest.raises(StoreError, match="in the order"):
        _create(path, ids=IDS[:3], labels=LABELS[:3], splits=["test", "train", "train"])
    with pytest.raises(StoreError, match="indices into class_names"):
        _create(path, labels=LABELS + 1)
    with pytest.raises(StoreError, match="unique.*img-0"):
        _create(path, ids=["img-0"] * 10)
    with pytest.raises(StoreError, match="dtype must be one of.*float64"):
        _create(path, dtype="float64")
    with pytest.raises(StoreError, match="compression.*Did you mean 'gzip'"):
        _create(path, compression="gzp")
    with pytest.raises(StoreError, match="cut 'block9' is missing.*width"):
        store.create(path, ids=IDS, labels=LABELS, splits=SPLITS, class_names=CLASSES,
                     cuts=dict(CUTS, block9={"layer": "x", "pooling": "avg"}), provenance=PROV)
    assert not path.exists() and not Path(str(path) + ".partial").exists()
    _create(path)
    with pytest.raises(StoreError, match="already exists"):
        _create(path)
    _create(path, overwrite=True, provenance={"seed": 1})
    assert store.provenance(path) == {"seed": 1}
    # A split missing from the data is listed with an empty range; unlisted ones go last.
    other = tmp_path / "other.h5"
    _create(other, ids=IDS[:3], labels=LABELS[:3], splits=["train", "train", "holdout"])
    store.write_rows(other, 0, {c: a[:3] for c, a in _data().items()})
    assert store.splits(other) == {"train": (0, 2), "val": (2, 2), "test": (2, 2),
                                   "holdout": (2, 3)}
    X, y, ids = store.read(other, "block1", split="val")
    assert X.shape == (0, 4) and len(ids) == 0


def test_foreign_version_nonhdf5_partial_truncated_refused(full, tmp_path):
    path, _ = full
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 2
    with pytest.raises(StoreError, match="format version 2.*reads version 1.*upgrade cutpoint"):
        store.read(path, "block1")
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 0
    with pytest.raises(StoreError, match="format version 0.*re-extract"):
        store.info(path)

    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with pytest.raises(StoreError, match="HDF5 file but not a cutpoint embedding store.*None"):
        store.cuts(foreign)

    text = tmp_path / "notes.h5"
    text.write_text("just some text\n")
    with pytest.raises(StoreError, match="not an HDF5 file.*just som"):
        store.rows_done(text)
    with pytest.raises(StoreError, match="does not exist"):
        store.rows_done(tmp_path / "missing.h5")

    good = tmp_path / "good.h5"
    _create(good)
    half = Path(str(good) + ".partial")
    good.rename(half)
    with pytest.raises(StoreError, match="half-created"):
        store.read_samples(half)
    with pytest.raises(StoreError, match="does not exist.*half-created"):
        store.read_samples(good)

    truncated = tmp_path / "truncated.h5"
    _create(truncated)
    blob = Path(truncated).read_bytes()
    Path(truncated).write_bytes(blob[: len(blob) // 3])
    with pytest.raises(StoreError, match="cannot be opened.*delete it and re-run extraction"):
        store.rows_done(truncated)


def test_missing_cut_lists_available_cuts(full):
    path, _ = full
    with pytest.raises(StoreError) as e:
        store.read(path, "block3")
    msg = str(e.value)
    assert "'block1'" in msg and "'block2'" in msg and "make extract CUTS=block3" in msg


def test_umap_round_trip(full):
    path, _ = full
    coords = np.random.default_rng(1).normal(size=(3, 2))
    params = {"n_neighbors": 15, "min_dist": 0.1, "random_state": 0}
    store.write_umap(path, "block2", "test", coords, params)
    got, p = store.read_umap(path, "block2", "test")
    assert got.dtype == np.float32 and p == params
    np.testing.assert_array_equal(got, coords.astype(np.float32))
    store.write_umap(path, "block2", "test", coords * 2, {"n_neighbors": 5})   # replaces
    got, p = store.read_umap(path, "block2", "test")
    np.testing.assert_array_equal(got, (coords * 2).astype(np.float32))
    assert p == {"n_neighbors": 5}
    with pytest.raises(StoreError, match=r"shape \(5, 2\)"):
        store.write_umap(path, "block2", "train", coords, params)
    with pytest.raises(StoreError, match="no UMAP for cut 'block1'.*block2/test"):
        store.read_umap(path, "block1", "test")
    assert "umap: block2/test" in store.info(path)


def test_join_shards_equals_single_store(tmp_path):
    data = _data()
    # Shard A holds the first half of every split, shard B the rest (as a Dask run would).
    a_rows, b_rows = [0, 1, 2, 5, 7], [3, 4, 6, 8, 9]
    order = a_rows[:3] + b_rows[:2] + a_rows[3:4] + b_rows[2:3] + a_rows[4:] + b_rows[3:]
    single = tmp_path / "single.h5"
    _create(single, ids=[IDS[i] for i in order], labels=LABELS[order],
            splits=[SPLITS[i] for i in order], chunk_rows=3)
    _write_all(single, {c: x[order] for c, x in data.items()}, block=4)
    shards = []
    for k, rows in enumerate([a_rows, b_rows]):
        p = tmp_path / f"shard{k}.h5"
        _create(p, ids=[IDS[i] for i in rows], labels=LABELS[rows],
                splits=[SPLITS[i] for i in rows], chunk_rows=3,
                provenance=dict(PROV, shard={"index": k, "rows": rows}))
        _write_all(p, {c: x[rows] for c, x in data.items()}, block=2)
        shards.append(p)
    out = tmp_path / "joined.h5"
    store.join_shards(shards, out)
    assert store.provenance(out) == dict(PROV, joined_shards=2)
    skip = ("created", "provenance")
    _same(_content(single, skip), _content(out, skip))
    assert not Path(str(out) + ".partial").exists()

    with pytest.raises(StoreError, match="already exists"):
        store.join_shards(shards, out)
    odd = tmp_path / "odd.h5"
    store.create(odd, ids=["z"], labels=[0], splits=["train"], class_names=["a", "b", "c"],
                 cuts=CUTS, provenance=PROV)
    store.write_rows(odd, 0, {c: x[:1] for c, x in data.items()})
    with pytest.raises(StoreError, match="classes are.*'a'.*expected.*Sandale"):
        store.join_shards([shards[0], odd], tmp_path / "bad.h5")
    seed1 = tmp_path / "seed1.h5"
    _create(seed1, ids=["q"], labels=[0], splits=["test"], provenance=dict(PROV, seed=1))
    store.write_rows(seed1, 0, {c: x[:1] for c, x in data.items()})
    with pytest.raises(StoreError, match=r"different provenance.*\['seed'\]"):
        store.join_shards([shards[0], seed1], tmp_path / "bad.h5")
    unfinished = tmp_path / "unfinished.h5"
    _create(unfinished)
    with pytest.raises(StoreError, match="incomplete.*0 of 10"):
        store.join_shards([shards[0], unfinished], tmp_path / "bad.h5")
    assert not (tmp_path / "bad.h5").exists()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "embeddings", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)


def test_cli_info_and_errors(full, tmp_path):
    path, _ = full
    proc = _cli("info", path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "block1" in out and "block2" in out and "block1_pool" in out
    assert "samples: 10 (train 5, val 2, test 3)" in out
    assert "Sandale" in out and "complete" in out and "small_vgg" in out

    bad = tmp_path / "bad.h5"
    bad.write_text("nope")
    proc = _cli("info", bad)
    assert proc.returncode == 2
    assert "not an HDF5 file" in proc.stderr and "Traceback" not in proc.stderr

    proc = _cli("join", tmp_path / "j.h5", path)
    assert proc.returncode == 0, proc.stderr
    X, _, _ = store.read(tmp_path / "j.h5", "block2")
    np.testing.assert_array_equal(X, store.read(path, "block2")[0])


def test_iter_chunks_reads_blocks_of_at_most_chunk_rows_that_join_to_read(tmp_path):
    path = tmp_path / "s.h5"
    _create(path, chunk_rows=2)
    data = _data()
    _write_all(path, data, 10)
    for split, rows in (("train", None), ("test", None), (None, (3, 9)), ("train", (1, 5))):
        blocks = list(store.iter_chunks(path, "block2", split, rows=rows))
        assert blocks and all(len(b[0]) <= 2 for b in blocks)       # the store's chunk_rows
        X, y, ids = store.read(path, "block2", split, rows=rows)
        assert np.array_equal(np.concatenate([b[0] for b in blocks]), X)
        assert np.array_equal(np.concatenate([b[1] for b in blocks]), y)
        assert list(np.concatenate([b[2] for b in blocks])) == list(ids)
    assert [len(b[0]) for b in store.iter_chunks(path, "block1", chunk_rows=4)] == [4, 4, 2]
    assert np.array_equal(store.labels(path, "val"), LABELS[5:7])
    assert np.array_equal(store.labels(path), LABELS)
