"""The results table: one experiment id per definition, rows of others kept apart."""
from cutpoint import config, results


def test_rows_of_other_experiments_are_kept_but_never_compared(tmp_path):
    cfg = config.load(None, ["dataset.name=digits"])
    other = config.load(None, ["dataset.name=digits", "experiment.seed=1"])
    table = tmp_path / "results.csv"
    mine = results.new_row(cfg, run_id="a", stage="classical", accuracy=0.9, val_accuracy=0.8)
    curve = results.new_row(cfg, run_id="b", stage="classical", accuracy=0.7, val_accuracy=0.6,
                            labels_per_class=5)
    theirs = results.new_row(other, run_id="c", stage="classical", accuracy=0.99)
    for r in (mine, curve, theirs):
        results.append(table, r)
    assert results.experiment_id(cfg) != results.experiment_id(other)   # seed defines splits
    rows = results.read(table)
    assert [r["run_id"] for r in results.comparable(rows, cfg)] == ["a"]
    assert [r["run_id"] for r in results.curve_rows(rows, cfg)] == ["b"]
    moved, dest = results.archive(table, cfg)
    assert moved == 1 and [r["run_id"] for r in results.read(dest)] == ["c"]
    assert [r["run_id"] for r in results.read(table)] == ["a", "b"]
    assert results.archive(table, cfg)[0] == 0                           # idempotent


def test_a_change_of_method_settings_keeps_the_experiment(tmp_path):
    """Classifier or fine-tuning settings choose methods, not the experiment's data."""
    a = config.load(None, ["dataset.name=digits"])
    b = config.load(None, ["dataset.name=digits", "classical.bootstrap=10", "finetune.epochs=1"])
    c = config.load(None, ["dataset.name=digits", "extract.pooling=max"])
    assert results.experiment_id(a) == results.experiment_id(b) != results.experiment_id(c)


def test_only_the_newest_definition_of_a_method_is_compared():
    """A classifier whose definition changed gets a new run id; the report compares its newest
    row only, never both (which would let the old one win the validation choice)."""
    from cutpoint import config
    cfg = config.load(None, [])
    old = results.new_row(cfg, run_id="a", stage="classical", method="pixels+xgboost",
                          cut="pixels", classifier="xgboost", val_accuracy=0.99, accuracy=0.9,
                          created="2026-01-01T00:00:00+00:00")
    new = dict(old, run_id="b", val_accuracy=0.95, created="2026-02-01T00:00:00+00:00")
    other = dict(old, run_id="c", cut="block3", created="2025-01-01T00:00:00+00:00")
    curve = dict(old, run_id="d", labels_per_class=5, seed=1)
    rows = [old, new, other, curve]
    assert [r["run_id"] for r in results.comparable(rows, cfg)] == ["b", "c"]
    assert [r["run_id"] for r in results.curve_rows(rows, cfg)] == ["d"]


def test_a_validation_tie_is_broken_by_a_declared_order_never_by_timing():
    from report.curve import _pick

    def rows(t1, t2):
        return [dict(run_id="a", stage="classical", method="frozen+rbf_svm", cut="block2",
                     n_features=64, val_accuracy=0.72, fit_seconds=t1, accuracy=0.78),
                dict(run_id="b", stage="classical", method="frozen+knn", cut="block1",
                     n_features=32, val_accuracy=0.72, fit_seconds=t2, accuracy=0.59),
                dict(run_id="c", stage="classical", method="frozen+logreg", cut="fc",
                     n_features=128, val_accuracy=0.70, fit_seconds=0.01, accuracy=0.90)]
    # the same runs timed differently choose the same row: the tie goes to fewer features
    assert _pick(rows(0.1, 9.0))["run_id"] == _pick(rows(9.0, 0.1))["run_id"] == "b"
    assert sorted(rows(1, 2), key=results.rank_key)[-1]["run_id"] == "c"   # lower val: last


def test_build_row_writes_what_the_stages_wrote_by_hand(tmp_path):
    """The one row builder gives, column for column, the row the classical stage (and the
    finetune and curve stages) used to assemble with `new_row`."""
    import json
    from pathlib import Path

    from classical.stores import store_columns
    from cutpoint.provenance import hash_obj
    cfg = config.load(None, [])
    split_def = {"dataset": "fashion_mnist", "seed": 0}
    prov = {"backbone": "small_vgg", "weights": "runs/x/backbone", "dataset": "fashion_mnist",
            "split_def": split_def, "backbone_info": {"blocks": ["b1", "b2"]}}
    ev = {"accuracy": 0.9, "acc_ci_low": 0.88, "acc_ci_high": 0.92, "macro_f1": 0.899,
          "log_loss": None, "predict_seconds": 0.01234, "y_pred": [1]}
    info = {"fit_seconds": 12.34567, "best_params": {"clf__C": 0.1, "a": [1]}}
    run_dir = Path(tmp_path)
    out = run_dir / "classical" / "cl-x"
    by_hand = results.new_row(
        cfg, run_id="cl-x", stage="classical", method="frozen+logreg", backbone="small_vgg",
        weights="runs/x/backbone", cut="c2", layer="b2", pooling="avg", classifier="logreg",
        frozen_blocks=2, dataset="fashion_mnist", split_def=hash_obj(split_def, 12), n_train=9,
        accuracy=0.9, acc_ci_low=0.88, acc_ci_high=0.92, macro_f1=0.899, log_loss=None,
        fit_seconds=12.346, predict_seconds=0.012,
        best_params=json.dumps(info["best_params"], sort_keys=True), notes="n",
        predictions="classical/cl-x/predictions.npz", model="classical/cl-x/model.joblib")
    built = results.build_row(
        cfg, run_id="cl-x", stage="classical", scores=ev,
        **store_columns(prov, "c2", {"layer": "b2", "pooling": "avg"}, "logreg"),
        n_train=9, fit_seconds=info["fit_seconds"], predict_seconds=ev["predict_seconds"],
        best_params=info["best_params"], notes="n", run_dir=run_dir,
        predictions=out / "predictions.npz", model=out / "model.joblib")
    assert {k: v for k, v in built.items() if k != "created"} == \
        {k: v for k, v in by_hand.items() if k != "created"}
    pixels = store_columns({"backbone": "pixels"}, "pixels",
                                   {"layer": "input", "frozen_blocks": 0}, "knn", dataset="d")
    assert pixels["method"] == "pixels+knn" and pixels["frozen_blocks"] == 0
    assert pixels["dataset"] == "d" and pixels["split_def"] is None
