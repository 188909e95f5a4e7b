"""Split logic: stratification, seeding, disjointness, budgets, class halves and prepare(cfg)."""
import copy
import json

import numpy as np
import pytest

from cutpoint import datasets as D
from cutpoint import splits as S
from cutpoint.config import DEFAULTS
from cutpoint.datasets import DatasetError, DatasetWarning

# 3 classes of 100, 50 and 20 rows, shuffled
LABELS = np.random.default_rng(0).permutation(np.repeat([0, 1, 2], [100, 50, 20]))
ALL = np.arange(len(LABELS))


@pytest.fixture(scope="module")
def digits():
    return D.load("digits")


def _cfg(**dataset):
    cfg = copy.deepcopy(DEFAULTS)
    cfg["dataset"].update(dataset)
    return cfg


def test_carve_validation_stratified_disjoint_and_seeded():
    train, val = S.carve_validation(LABELS, ALL, 0.2, seed=1)
    assert train.dtype == np.int64 and val.dtype == np.int64
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()
    assert not set(train) & set(val)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), ALL)
    assert np.bincount(LABELS[val]).tolist() == [20, 10, 4]
    again = S.carve_validation(LABELS, ALL, 0.2, seed=1)
    np.testing.assert_array_equal(again[1], val)
    other = S.carve_validation(LABELS, ALL, 0.2, seed=2)
    assert not np.array_equal(other[1], val)
    assert np.bincount(LABELS[other[1]]).tolist() == [20, 10, 4]


def test_carve_validation_on_a_subset_and_small_classes():
    idx = ALL[::3]
    train, val = S.carve_validation(LABELS, idx, 0.5, seed=0)
    assert set(train) | set(val) == set(idx.tolist())
    # tiny fractions still give each class one validation row, and leave one for training
    _, val = S.carve_validation(LABELS, ALL, 0.001, seed=0)
    assert np.bincount(LABELS[val]).tolist() == [1, 1, 1]
    single = np.concatenate([np.flatnonzero(LABELS == 0)[:5], np.flatnonzero(LABELS == 2)[:1]])
    with pytest.raises(DatasetError, match="Class 2 has only 1 row"):
        S.carve_validation(LABELS, single, 0.2, seed=0)
    for bad in (0, 1, 1.5, -0.1, "0.2"):
        with pytest.raises(DatasetError, match="in \\(0, 1\\)"):
            S.carve_validation(LABELS, ALL, bad, seed=0)
    with pytest.raises(DatasetError, match="repeated"):
        S.carve_validation(LABELS, [0, 0, 1], 0.5, seed=0)
    with pytest.raises(DatasetError, match="non-negative integer"):
        S.carve_validation(LABELS, ALL, 0.2, seed=-1)


def test_label_budget_caps_keeps_small_classes_and_nests():
    with pytest.warns(DatasetWarning, match="2 \\(20\\)"):  # class 2 has only 20: all kept
        keep = S.label_budget(LABELS, ALL, 30, seed=0)
    assert np.bincount(LABELS[keep]).tolist() == [30, 30, 20]
    assert (np.diff(keep) > 0).all()
    small = S.label_budget(LABELS, ALL, 10, seed=0)
    assert np.bincount(LABELS[small]).tolist() == [10, 10, 10]
    assert set(small) <= set(S.label_budget(LABELS, ALL, 15, seed=0))  # nested budgets
    np.testing.assert_array_equal(small, S.label_budget(LABELS, ALL, 10, seed=0))
    assert not np.array_equal(small, S.label_budget(LABELS, ALL, 10, seed=1))
    with pytest.raises(DatasetError, match="positive integer"):
        S.label_budget(LABELS, ALL, 0, seed=0)


def test_stratified_limit_preserves_proportions():
    keep = S.stratified_limit(LABELS, ALL, 34, seed=0)
    assert len(keep) == 34 and np.bincount(LABELS[keep]).tolist() == [20, 10, 4]
    odd = S.stratified_limit(LABELS, ALL, 17, seed=0)
    assert len(odd) == 17 and np.bincount(LABELS[odd]).tolist() == [10, 5, 2]
    tiny = S.stratified_limit(LABELS, ALL, 3, seed=0)  # at least one per class
    assert np.bincount(LABELS[tiny]).tolist() == [1, 1, 1]
    np.testing.assert_array_equal(S.stratified_limit(LABELS, ALL, 10_000, seed=0), ALL)
    assert not np.array_equal(keep, S.stratified_limit(LABELS, ALL, 34, seed=5))
    with pytest.raises(DatasetError, match="positive integer"):
        S.stratified_limit(LABELS, ALL, 0, seed=0)


def test_class_subset_relabels_in_given_order(digits):
    sub = S.class_subset(digits, [7, 2])
    assert sub.class_names == ["7", "2"] and sub.class_ids == [7, 2]
    assert len(sub) == int(np.isin(digits.labels, [7, 2]).sum())
    first7 = np.flatnonzero(digits.labels == 7)[0]
    row = int(np.flatnonzero(sub.ids == digits.ids[first7])[0])
    assert sub.labels[row] == 0
    np.testing.assert_array_equal(sub.images([row]), digits.images([first7]))
    # a view of a view keeps the original class ids
    again = S.class_subset(sub, [1])
    assert again.class_ids == [2] and (again.labels == 0).all()
    with pytest.raises(DatasetError, match="Unknown class id"):
        S.class_subset(digits, [3, 10])
    with pytest.raises(DatasetError, match="repeat"):
        S.class_subset(digits, [3, 3])


def test_order_by_split_makes_splits_contiguous(digits):
    order = S.order_by_split(digits)
    assert sorted(order.tolist()) == list(range(len(digits)))
    s = digits.split[order]
    n_train = int((s == "train").sum())
    assert (s[:n_train] == "train").all() and (s[n_train:] == "test").all()
    assert (np.diff(order[:n_train]) > 0).all()  # relative order kept
    rev = S.order_by_split(digits, order=("test", "train"))
    assert digits.split[rev[0]] == "test"


def test_describe_split_is_json(digits):
    rec = S.describe_split(digits, seed=3, val_fraction=0.1)
    text = json.dumps(rec)
    assert rec["sizes"] == {"test": int((digits.split == "test").sum()),
                            "train": int((digits.split == "train").sum())}
    assert sum(rec["class_counts"]["train"]) == rec["sizes"]["train"]
    assert rec["seed"] == 3 and "ids_sha256" in text


def test_prepare_views_budget_limit_and_reproducibility(digits):
    cfg = _cfg(name="digits", limit=200, labels_per_class=12, val_fraction=0.25)
    out = S.prepare(cfg, dataset=digits)
    src, tgt, sp = out["source"], out["target"], out["splits"]
    assert src.class_ids == [0, 1, 2, 3, 4] and tgt.class_ids == [5, 6, 7, 8, 9]
    assert tgt.class_names == ["5", "6", "7", "8", "9"]
    assert set(np.unique(tgt.labels)) == set(range(5))
    # limit per split (val is carved after it); budget only on target's train split
    assert np.isin(src.split, ["train", "val"]).sum() == 200 and (src.split == "test").sum() <= 200
    assert np.bincount(tgt.labels[tgt.split != "test"]).tolist() == [12] * 5
    assert (tgt.split == "test").sum() <= 200
    for view, idx in ((src, sp["source"]), (tgt, sp["target"])):
        # the carve lives in the view: rows ordered train, val, test; indices agree with it
        order = {"train": 0, "val": 1, "test": 2}
        assert np.all(np.diff([order[s] for s in view.split]) >= 0)
        for name in ("train", "val", "test"):
            np.testing.assert_array_equal(idx[name], np.flatnonzero(view.split == name))
    # no id appears in both halves
    assert not set(src.ids) & set(tgt.ids)
    json.dumps(out["split_def"])
    assert out["split_def"]["target"]["sizes"] == {"train": 45, "val": 15,
                                                   "test": int((tgt.split == "test").sum())}
    same = S.prepare(cfg, dataset=digits)
    np.testing.assert_array_equal(same["target"].ids, tgt.ids)
    np.testing.assert_array_equal(same["splits"]["target"]["val"], sp["target"]["val"])
    cfg["experiment"]["seed"] = 1
    other = S.prepare(cfg, dataset=digits)
    assert not np.array_equal(other["target"].ids, tgt.ids)
    # ... but with a limit the test rows do not move with the seed
    test_ids = lambda v: set(v.ids[v.split == "test"])  # noqa: E731
    assert test_ids(other["target"]) == test_ids(tgt) and len(test_ids(tgt)) > 0
    assert test_ids(other["source"]) == test_ids(src)


def test_prepare_records_the_splits_once_and_refuses_others(digits, tmp_path):
    """The run folder's splits.npz is written by the first stage and checked by every later
    one: a stage cannot silently work on other rows."""
    cfg = _cfg(name="digits", limit=100, val_fraction=0.2)
    first = S.prepare(cfg, dataset=digits, run_dir=tmp_path)
    with np.load(tmp_path / S.SPLITS_FILE) as z:
        np.testing.assert_array_equal(z["target_ids"], first["target"].ids)
        np.testing.assert_array_equal(z["target_split"], first["target"].split)
    again = S.prepare(cfg, dataset=digits, run_dir=tmp_path)     # same rows: accepted
    np.testing.assert_array_equal(again["target"].split, first["target"].split)
    cfg["experiment"]["seed"] = 5                                  # other val rows: refused
    with pytest.raises(DatasetError, match="records other rows.*make clean"):
        S.prepare(cfg, dataset=digits, run_dir=tmp_path)


def test_prepare_all_classes_and_no_source():
    cfg = _cfg(name="digits", source_classes=[], target_classes=[])
    out = S.prepare(cfg)  # loads the dataset by name
    assert out["source"] is None and out["splits"]["source"] is None
    assert out["split_def"]["source"] is None
    assert len(out["target"]) == 1797 and out["target"].class_ids == list(range(10))


def test_prepare_carves_a_test_split_when_the_dataset_has_none(digits):
    train_only = digits.subset(np.flatnonzero(digits.split == "train"))
    with pytest.warns(DatasetWarning, match="no test split"):
        out = S.prepare(_cfg(name="digits", source_classes=[], target_classes=[]),
                        dataset=train_only)
    tgt = out["target"]
    assert 0.18 < (tgt.split == "test").mean() < 0.22
    assert out["split_def"]["test_carved"]["seed"] == S.TEST_CARVE_SEED
    assert (train_only.split == "train").all()  # the dataset itself is not modified


def test_prepare_bad_config(digits):
    with pytest.raises(DatasetError, match="dataset.target_classes.*Unknown class id"):
        S.prepare(_cfg(name="digits", target_classes=[5, 12]), dataset=digits)
    with pytest.raises(DatasetError, match="labels_per_class"):
        S.prepare(_cfg(name="digits", labels_per_class=-1), dataset=digits)
    with pytest.raises(DatasetError, match="target view.*at least 2 per class"):
        S.prepare(_cfg(name="digits", labels_per_class=1), dataset=digits)
    with pytest.warns(DatasetWarning, match="share classes"):
        S.prepare(_cfg(name="digits", source_classes=[0, 1], target_classes=[1, 2]),
                  dataset=digits)


def test_prepare_loads_by_name_and_path(tmp_path):
    """prepare(cfg) drives the loader by name and path (here: an .npz)."""
    rng = np.random.default_rng(0)
    y_tr, y_te = np.arange(40) % 4, np.arange(20) % 4
    np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 256, (40, 5, 5), dtype=np.uint8),
             y_train=y_tr, x_test=rng.integers(0, 256, (20, 5, 5), dtype=np.uint8), y_test=y_te)
    out = S.prepare(_cfg(name="npz", path=str(tmp_path / "d.npz"), source_classes=[0, 1],
                         target_classes=[3, 2]))
    assert out["target"].class_names == ["3", "2"] and len(out["target"]) == 30
    assert out["split_def"]["dataset_source"]["loader"] == "npz:npz"
