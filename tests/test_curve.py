"""The label-efficiency curve on a tiny synthetic store: nested recorded subsets, selection
inside the budget only, resumable, reproducible, aggregated over seeds."""
import numpy as np
import pytest

from test_classical import _make_store
from cutpoint import config, results
from cutpoint.datasets import DatasetError
from cutpoint.splits import budget_subset
from curve.run import SUBSETS, run_classical
from embeddings import store
from report import curve as rcurve


def _cfg(*sets):
    return config.load(None, ["curve.budgets=1,3,12", "curve.seeds=0,1",
                              "curve.classifiers=logreg,knn",
                              "curve.holdout_min=10", "curve.cv_folds=3",
                              "classical.bootstrap=50", "classical.n_jobs=1", *sets])


def _run_dir(tmp_path, name="exp"):
    d = tmp_path / name
    d.mkdir()
    _make_store(d / "embeddings.h5", n_train=150, n_test=60, cuts=("block2",))
    return d


def test_budgets_are_nested_seeded_and_too_large_a_budget_names_the_class():
    y = np.repeat([0, 1, 2], [30, 30, 4])
    idx = np.arange(len(y))
    small, big = budget_subset(y, idx, 2, 7), budget_subset(y, idx, 4, 7)
    assert set(small) <= set(big) and np.bincount(y[big]).tolist() == [4, 4, 4]
    assert not np.array_equal(budget_subset(y, idx, 4, 8), big)      # the seed matters
    with pytest.raises(DatasetError, match=r"class 2 \(bag\) has only 4 training rows"):
        budget_subset(y, idx, 5, 7, class_names=["sandal", "shirt", "bag"])


def test_curve_rows_never_depend_on_the_validation_split(tmp_path):
    """Selection uses labels inside the budget only: scrambling the store's val rows (labels
    and features) changes no number; rows carry budget, seed, rule and val score."""
    cfg = _cfg()
    a = _run_dir(tmp_path, "a")
    rows_a = run_classical(cfg, a, progress=False)
    b = _run_dir(tmp_path, "b")
    lo, hi = store.splits(b / "embeddings.h5")["val"]
    rng = np.random.default_rng(5)
    for cut in ("block2",):
        X, _, _ = store.read(b / "embeddings.h5", cut)
        X[lo:hi] = rng.normal(0, 50, (hi - lo, X.shape[1]))
        import h5py
        with h5py.File(b / "embeddings.h5", "r+") as f:
            f[f"cuts/{cut}"][lo:hi] = X[lo:hi]
    rows_b = run_classical(cfg, b, progress=False)
    key = lambda r: (r["labels_per_class"], r["seed"], r["cut"], r["classifier"])  # noqa: E731
    assert len(rows_a) == 1 * 3 * 2 * 2                  # cuts x budgets x seeds x classifiers
    for ra, rb in zip(sorted(rows_a, key=key), sorted(rows_b, key=key)):
        assert ra["accuracy"] == rb["accuracy"] and ra["best_params"] == rb["best_params"]
    by_b = {r["labels_per_class"]: r for r in rows_a}
    assert by_b[1]["val_accuracy"] is None and "declared" in by_b[1]["selection"]
    assert "3-fold" in by_b[3]["selection"] and "held-out 20%" in by_b[12]["selection"]
    assert all(r["n_train"] == 3 * r["labels_per_class"] for r in rows_a)
    assert {r["seed"] for r in rows_a} == {0, 1}
    ids = np.load(a / SUBSETS)
    assert set(ids["s0_b1"]) <= set(ids["s0_b3"]) <= set(ids["s0_b12"])
    assert all(i.startswith("s") and int(i[1:]) < 120 for i in ids["s1_b12"])   # train rows only


def test_a_killed_curve_resumes_to_the_same_numbers(tmp_path):
    cfg = _cfg()
    full = _run_dir(tmp_path, "full")
    ref = {r["run_id"]: r["accuracy"] for r in run_classical(cfg, full, progress=False)}
    part = _run_dir(tmp_path, "part")
    first = run_classical(cfg, part, budgets=[1, 3], progress=False)     # "killed" half way
    rest = run_classical(cfg, part, progress=False)
    assert len(first) + len(rest) == len(ref) and not {r["run_id"] for r in first} & {
        r["run_id"] for r in rest}
    assert {r["run_id"]: r["accuracy"] for r in first + rest} == ref
    assert run_classical(cfg, part, progress=False) == []                # nothing redone


def test_aggregate_crossings_and_figure(tmp_path):
    cfg = _cfg()
    rows = []
    acc = {"frozen": {5: 0.80, 20: 0.85, 100: 0.88}, "ft": {5: 0.70, 20: 0.86, 100: 0.95}}
    for s, noise in ((0, -0.01), (1, 0.0), (2, 0.01)):
        for b in (5, 20, 100):
            rows.append(results.new_row(cfg, run_id=f"f{s}{b}", stage="classical",
                                        cut="block3", classifier="logreg", frozen_blocks=3,
                                        labels_per_class=b, seed=s, val_accuracy=0.9,
                                        accuracy=acc["frozen"][b] + noise))
            rows.append(results.new_row(cfg, run_id=f"w{s}{b}", stage="classical",
                                        cut="block1", classifier="knn", frozen_blocks=1,
                                        labels_per_class=b, seed=s, val_accuracy=0.5,
                                        accuracy=0.99))    # better on test, worse on val
            rows.append(results.new_row(cfg, run_id=f"t{s}{b}", stage="finetune", depth="all",
                                        method="finetune k=all", labels_per_class=b, seed=s,
                                        val_accuracy=0.8, accuracy=acc["ft"][b] + noise))
    agg = rcurve.aggregate(rows)
    st = agg[rcurve.FROZEN][20]
    assert st["mean"] == pytest.approx(0.85) and st["std"] == pytest.approx(0.01)
    assert (st["min"], st["max"]) == pytest.approx((0.84, 0.86))
    assert st["ci_low"] == pytest.approx(0.85 - 4.302653 * 0.01 / np.sqrt(3), abs=1e-5)
    assert agg[rcurve.FROZEN][5]["chosen"] == ["block3+logreg"] * 3       # by val, not test
    text = " ".join(rcurve.crossings(agg))
    assert "beats fine-tune k=all up to 5 labels per class; from 20 on" in text
    rcurve.plot(agg, tmp_path / "curve.png", "t")
    from PIL import Image
    img = np.asarray(Image.open(tmp_path / "curve.png").convert("L"), dtype=float)
    assert img.shape[0] > 300 and img.std() > 5


@pytest.mark.slow
def test_finetune_cells_select_inside_the_budget_and_rerun_identically(tmp_path, monkeypatch):
    """Fine-tuning and scratch cells: the held-out part of the subset (b >= holdout_min) or
    declared settings (below) — never the experiment's validation split: scrambling its images
    changes no number, and the rerun is identical (op determinism, fresh pipelines)."""
    from test_finetune import _cfg as ft_cfg
    from curve.run import run_finetune_cells
    from finetune import run as frun

    cfg = ft_cfg(tmp_path, "curve.budgets=1,12", "curve.seeds=3", "curve.holdout_min=10",
                 "curve.depths=0,2,scratch", "curve.min_steps_per_epoch=3")
    run = tmp_path / "run"
    rows = run_finetune_cells(cfg, run, progress=False)
    assert len(rows) == 2 * 3 and {r["seed"] for r in rows} == {3}
    by = {(r["labels_per_class"], r["method"]): r for r in rows}
    k0, k2, sc = by[(12, "finetune k=0")], by[(12, "finetune k=2")], by[(12, "scratch")]
    assert k0["n_train"] == 24 and "held-out 20%" in k0["selection"]
    assert k2["n_train"] + k2["n_val"] == 24 and k2["n_val"] >= 2     # weights: the rest only
    assert "held-out 20%" in k2["selection"] and k2["val_accuracy"] is not None
    assert json_of(k2)["probe_C"] == json_of(k0)["C"]                   # starts from the probe
    for r in (by[(1, "finetune k=2")], by[(1, "scratch")]):
        assert r["val_accuracy"] is None and "declared" in r["selection"] and r["n_train"] == 2
        assert r["epochs"] == cfg["finetune"]["epochs"]
    assert json_of(by[(1, "scratch")])["learning_rate"] == 0.003   # [0.001, 0.003][2 // 2]
    assert "declared in advance" in by[(1, "finetune k=0")]["selection"]
    assert run_finetune_cells(cfg, run, progress=False) == []             # resumable

    (run / "results.csv").rename(run / "first.csv")
    real_init = frun.Context.__init__

    def scrambled(self, *a, **k):
        real_init(self, *a, **k)
        rng = np.random.default_rng(0)
        self.x["val"] = rng.integers(0, 256, self.x["val"].shape).astype(self.x["val"].dtype)
        self.y = self.y.copy()
        self.y[self.rows["val"]] = rng.permutation(self.y[self.rows["val"]])
    monkeypatch.setattr(frun.Context, "__init__", scrambled)
    again = {r["run_id"]: r for r in run_finetune_cells(cfg, run, progress=False)}
    for r in rows:
        for col in ("accuracy", "log_loss", "val_accuracy", "epochs", "best_params"):
            assert again[r["run_id"]][col] == r[col], (r["method"], col)


def json_of(row):
    import json
    return json.loads(row["best_params"])
