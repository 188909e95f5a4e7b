"""classical: the pipeline registry, the train-only selection protocol, the CLI on tiny stores."""
import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC, LinearSVC
from sklearn.utils.estimator_checks import parametrize_with_checks
from xgboost import XGBClassifier

from classical import pipelines, protocol
from classical.__main__ import main
from classical.bundle import predict_embeddings
from classical.runner import run
from predict.__main__ import main as predict_main
from classical.pipelines import KernelRBFSVC, LabelEncodedClassifier, PrimalLinearSVC
from cutpoint import config as cconfig
from cutpoint import results
from embeddings import store

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["sandal", "shirt", "sneaker"]


def _blobs(n=300, d=12, k=3, seed=0, std=2.5):
    X, y = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=std, random_state=seed)
    return X.astype(np.float32), y


# ----------------------------------------------------------------------------- registry

def test_registry_lists_the_six_pipelines_and_their_grids_apply():
    assert pipelines.available() == ["logreg", "linear_svm", "rbf_svm", "random_forest",
                                     "xgboost", "knn"]
    for name in pipelines.available():
        pipe, grid, notes = pipelines.make(name, seed=3, n_jobs=1, n_features=16)
        assert isinstance(pipe, Pipeline) and pipe.steps[-1][0] == "clf"
        assert grid and notes
        for params in grid:
            clone(pipe).set_params(**params)     # every grid key is a real step__param
    assert len(pipelines.make("logreg")[1]) == 45
    text = pipelines.describe()
    assert all(n in text for n in pipelines.available())


def test_pca_option_and_rbf_gamma_follow_the_width():
    pipe, grid, notes = pipelines.make("random_forest", pca=5)
    assert [n for n, _ in pipe.steps] == ["scale", "pca", "clf"]
    assert pipe.named_steps["pca"].n_components == 5 and "PCA" in notes
    _, grid, _ = pipelines.make("rbf_svm", n_features=40)
    assert sorted({p["clf__gamma"] for p in grid}) == pytest.approx([0.3 / 40, 1 / 40, 3 / 40])


def test_unknown_classifier_names_a_close_match():
    with pytest.raises(ValueError, match=r"Unknown classifier 'logreq'.*Did you mean 'logreg'"):
        pipelines.make("logreq")
    with pytest.raises(ValueError, match="Available: logreg, linear_svm"):
        protocol.fit_select("svm_rbf", *_blobs(60))
    with pytest.raises(ValueError, match="n_jobs"):
        pipelines.make("knn", n_jobs=0)


@parametrize_with_checks([LabelEncodedClassifier(XGBClassifier(n_estimators=5, n_jobs=1)),
                          LabelEncodedClassifier(LogisticRegression()),
                          PrimalLinearSVC(solver="lbfgs"), KernelRBFSVC(precompute=True)])
def test_custom_estimators_follow_the_sklearn_contract(estimator, check):
    check(estimator)


@pytest.mark.parametrize("k", [2, 4])
def test_primal_linear_svc_solves_linearsvcs_problem(k):
    """Same objective as liblinear (squared hinge, one-vs-rest, regularised intercept): at a
    tight tolerance both reach the same coefficients; the shipped tol changes no prediction."""
    X, y = make_blobs(400, 10, centers=k, cluster_std=4.0, random_state=1)
    ref = LinearSVC(C=0.1, dual=False, tol=1e-8, max_iter=10000).fit(X, y)
    ours = PrimalLinearSVC(C=0.1, tol=1e-8, max_iter=10000, solver="lbfgs").fit(X, y)
    assert ours.coef_.shape == ref.coef_.shape and ours.intercept_.shape == ref.intercept_.shape
    assert np.allclose(ours.coef_, ref.coef_, atol=1e-4)
    assert np.allclose(ours.intercept_, ref.intercept_, atol=1e-4)
    shipped = PrimalLinearSVC(C=0.1, solver="lbfgs").fit(X, y)
    assert np.mean(shipped.predict(X) == ref.predict(X)) >= 0.995
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        PrimalLinearSVC(C=0.1, tol=1e-12, max_iter=2, solver="lbfgs").fit(X, y)
    # "auto": liblinear on narrow inputs, L-BFGS from LBFGS_MIN_FEATURES on
    wide = np.hstack([X, np.zeros((len(X), pipelines.LBFGS_MIN_FEATURES - X.shape[1]))])
    assert PrimalLinearSVC().fit(X, y).solver_ == "liblinear"
    assert PrimalLinearSVC().fit(wide, y).solver_ == "lbfgs"


@pytest.mark.parametrize("gamma", [0.05, "scale"])
def test_kernel_rbf_svc_is_svc_with_an_rbf_kernel(gamma):
    X, y = make_blobs(300, 8, centers=3, cluster_std=4.0, random_state=2)
    ref = SVC(C=3.0, gamma=gamma).fit(X[:200], y[:200])
    ours = KernelRBFSVC(C=3.0, gamma=gamma, precompute=True).fit(X[:200], y[:200])
    assert ours.gamma_ == pytest.approx(ref._gamma)
    assert np.allclose(ours.decision_function(X[200:]), ref.decision_function(X[200:]),
                       atol=1e-8)
    assert np.array_equal(ours.predict(X[200:]), ref.predict(X[200:]))
    assert np.array_equal(np.sort(ours.svc_.support_), np.sort(ref.support_))
    own = KernelRBFSVC(C=3.0, gamma=gamma).fit(X[:200], y[:200])    # narrow: libsvm's kernel
    assert not own.precompute_ and np.array_equal(own.predict(X[200:]), ref.predict(X[200:]))


def test_rbf_search_on_shared_distances_scores_like_independent_svcs():
    X, y = _blobs(300, std=5.0)
    grid = pipelines.make("rbf_svm", n_features=12)[1]
    grid = [{k.split("__", 1)[1]: v for k, v in p.items()} for p in grid]
    shared = pipelines.sweep_rbf_gram(KernelRBFSVC(precompute=True), X[:200], y[:200], X[200:],
                                      y[200:], grid, n_jobs=2)
    alone = pipelines.sweep_each(SVC(), X[:200], y[:200], X[200:], y[200:], grid)
    assert shared == alone and len(set(shared)) > 1


# ----------------------------------------------------------------------------- protocol

@pytest.mark.parametrize("name", pipelines.available())
def test_every_pipeline_beats_chance_by_a_wide_margin(name):
    X, y = _blobs(400)
    model, info = protocol.fit_select(name, X[:300], y[:300], seed=0, n_jobs=1)
    ev = protocol.evaluate(model, X[300:], y[300:], CLASSES, n_boot=200)
    assert ev["accuracy"] > 1 / 3 + 0.45, (name, ev["accuracy"], info["best_params"])
    assert info["n_train"] == 300 and info["n_val"] == 30
    assert len(info["val_scores"]) == len(pipelines.make(name, n_features=12)[1])
    assert info["best_params"] in [s["params"] for s in info["val_scores"]]
    assert list(ev["per_class_f1"]) == CLASSES
    has_proba = name not in ("linear_svm", "rbf_svm")
    assert (ev["log_loss"] is not None) == has_proba
    assert ev["proba"].shape == (100, 3 if has_proba else 0)


def test_logreg_warm_sweep_selects_like_independent_fits():
    X, y = _blobs(300, std=6.0, seed=2)
    pipe, grid, _ = pipelines.make("logreg")
    scaler = pipe[:-1].fit(X[:200])
    Xf, Xv = scaler.transform(X[:200]), scaler.transform(X[200:])
    small = [{"C": c} for c in pipelines.KORNBLITH_C[::4]]
    warm = pipelines.sweep_warm_c(pipe[-1], Xf, y[:200], Xv, y[200:], small, patience=0)
    cold = pipelines.sweep_each(pipe[-1], Xf, y[:200], Xv, y[200:], small)
    assert np.allclose(warm, cold, atol=0.02)
    assert np.argmax(warm) == np.argmax(cold) or warm[np.argmax(cold)] == max(warm)
    # Early stop: only points after the best are skipped, `patience` of them are fitted.
    early = pipelines.sweep_warm_c(pipe[-1], Xf, y[:200], Xv, y[200:], small, patience=2)
    fitted = [s for s in early if s is not None]
    best = int(np.argmax(fitted))
    assert early[:len(fitted)] == fitted and len(fitted) - 1 - best == 2
    assert all(s is None for s in early[len(fitted):]) and len(fitted) < len(small)
    assert np.allclose(fitted, warm[:len(fitted)])


def test_shipped_logreg_search_picks_the_c_of_the_full_45_value_search():
    """On real data (scikit-learn's digits, noisy pixels, standardised), the shipped search
    (warm starts, early stop past the peak) chooses the same C as the full 45-value search,
    with every value fitted to convergence: no ConvergenceWarning on the way, and the converged
    warm-started fits score within solver tolerance (1 % of the val rows; the large-C fits are
    ill-conditioned) of independent fits around the chosen C."""
    import warnings
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning

    X, y = load_digits(return_X_y=True)
    X = X + np.random.default_rng(0).normal(0, 4.0, X.shape)   # noisy: the peak is inside the grid
    pipe, grid, _ = pipelines.make("logreg")
    scaler = pipe[:-1].fit(X[:1000])
    Xf, Xv, yf, yv = scaler.transform(X[:1000]), scaler.transform(X[1000:]), y[:1000], y[1000:]
    plain = [{"C": c} for c in pipelines.KORNBLITH_C]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        shipped = pipelines.sweep_warm_c(pipe[-1], Xf, yf, Xv, yv, plain)
        full = pipelines.sweep_warm_c(pipe[-1], Xf, yf, Xv, yv, plain, patience=0)
    pick = lambda s: int(np.argmax([-1 if v is None else v for v in s]))  # noqa: E731
    assert pick(shipped) == pick(full)
    assert 0 < pick(full) < len(plain) - 1       # a real peak, not an edge of the grid
    assert any(s is None for s in shipped)       # and the early stop did skip values
    near = plain[pick(full) - 2:pick(full) + 3]      # independent fits around the choice
    cold = pipelines.sweep_each(pipe[-1], Xf, yf, Xv, yv, near)
    assert np.max(np.abs(np.subtract(full[pick(full) - 2:pick(full) + 3], cold))) <= 0.01


def test_xgboost_rounds_are_chosen_by_early_stopping_on_validation_and_refitted():
    X, y = _blobs(400, std=7.0, seed=3)
    Xf, yf, Xv, yv = X[:300], y[:300], X[300:], y[300:]
    est = LabelEncodedClassifier(XGBClassifier(max_depth=2, learning_rate=0.3, n_jobs=1,
                                               random_state=0))
    n = 300
    [(score, chosen)] = pipelines.sweep_early_stopping(
        est, Xf, yf, Xv, yv, [{"estimator__n_estimators": n}])
    rounds = chosen["estimator__n_estimators"]
    # every truncation of one booster grown to n rounds, scored on the same val rows
    full = clone(est).set_params(estimator__n_estimators=n).fit(Xf, yf)
    acc = [float(np.mean(np.argmax(full.estimator_.predict_proba(
        Xv, iteration_range=(0, r)), axis=1) == yv)) for r in range(1, n + 1)]
    assert score == acc[rounds - 1]
    seen = acc[:min(n, rounds + pipelines.XGB_PATIENCE)]    # what boosting got to see
    assert score == max(seen) and all(a < score for a in acc[:rounds - 1])   # the first best
    assert rounds + pipelines.XGB_PATIENCE < n      # it did stop early
    # fit_select refits that many rounds on train + val and records them
    model, info = protocol.fit_select("xgboost", X[:300], y[:300], n_jobs=1)
    r = info["best_params"]["clf__estimator__n_estimators"]
    assert 1 <= r <= 200 and [s["params"] for s in info["val_scores"]] == [info["best_params"]]
    assert model[-1].estimator_.get_booster().num_boosted_rounds() == r
    assert f"clf__estimator__n_estimators = {r}" in info["notes"]
    # with cross-validation (small label budgets) the folds' median number of rounds
    cv_model, cv_info = protocol.fit_select_cv("xgboost", X[:60], y[:60], folds=3, seed=0,
                                               n_jobs=1)
    from sklearn.model_selection import StratifiedKFold
    per_fold = [pipelines.sweep_early_stopping(
        clone(model[-1]), X[:60][tr], y[:60][tr], X[:60][va], y[:60][va],
        [{"estimator__max_depth": 6, "estimator__n_estimators": 200}])[0][1]
        ["estimator__n_estimators"]
        for tr, va in StratifiedKFold(3, shuffle=True, random_state=0).split(X[:60], y[:60])]
    assert cv_info["best_params"]["clf__estimator__n_estimators"] == int(np.median(per_fold))


def test_xgboost_with_non_contiguous_labels_predicts_the_original_labels():
    X, y = _blobs(300)
    labels = np.array([3, 7, 11])[y]
    model, _ = protocol.fit_select("xgboost", X[:240], labels[:240], n_jobs=1)
    pred = model.predict(X[240:])
    assert set(np.unique(pred)) <= {3, 7, 11}
    assert np.mean(pred == labels[240:]) > 0.8
    assert model[-1].label_encoder_.classes_.tolist() == [3, 7, 11]
    ev = protocol.evaluate(model, X[240:], labels[240:], {3: "a", 7: "b", 11: "c"}, n_boot=50)
    assert list(ev["per_class_f1"]) == ["a", "b", "c"]


def test_rbf_svm_fits_a_stratified_subset_and_says_so():
    X, y = _blobs(300)
    model, info = protocol.fit_select("rbf_svm", X, y, rbf_max_train=120, n_jobs=1)
    assert info["n_train"] == 120 and model["scale"].n_samples_seen_ == 120
    # the search fits the same share of the cap (108 of the 270 fit rows), scored on all 30 val
    assert info["n_fit"] == 108 and info["n_val"] == 30
    assert "Fitted on a stratified subset of 120 of 300 train + val rows" in info["notes"]
    small = protocol.fit_select("rbf_svm", X[:100], y[:100], n_jobs=1)[1]
    assert "Fitted on a stratified subset" not in small["notes"] and small["n_train"] == 100


@pytest.mark.parametrize("name", ["linear_svm", "rbf_svm", "random_forest", "xgboost"])
def test_the_same_seed_gives_the_same_selection_and_model(name):
    X, y = _blobs(300, std=6.0)
    (ma, a), (mb, b) = (protocol.fit_select(name, X[:240], y[:240], seed=4, n_jobs=2)
                        for _ in range(2))
    assert a["val_scores"] == b["val_scores"] and a["best_params"] == b["best_params"]
    assert np.array_equal(ma.predict(X[240:]), mb.predict(X[240:]))


def test_selection_is_seeded():
    X, y = _blobs(300, std=6.0)
    a = protocol.fit_select("knn", X, y, seed=4, n_jobs=1)[1]
    b = protocol.fit_select("knn", X, y, seed=4, n_jobs=1)[1]
    assert a["val_scores"] == b["val_scores"]
    # the seed chooses the carved validation rows: another seed scores other rows
    others = [protocol.fit_select("knn", X, y, seed=s, n_jobs=1)[1]["val_scores"]
              for s in (5, 6)]
    assert any(o != a["val_scores"] for o in others)


def test_validate_inputs_refuses_bad_data_with_clear_messages():
    X, y = _blobs(60)
    with pytest.raises(ValueError, match="60 rows but y_train has 59"):
        protocol.validate_inputs(X, y[:-1])
    bad = X.copy()
    bad[[4, 9], 2] = np.nan
    bad[9, 3] = np.inf
    with pytest.raises(ValueError, match=r"3 NaN/inf values in 2 of 60 rows \(first rows: "
                                         r"\[4, 9\]"):
        protocol.validate_inputs(bad, y)
    with pytest.raises(ValueError, match="at least 2"):
        protocol.validate_inputs(X, np.zeros(60, int))
    y_test = y.copy()
    y_test[0] = 5
    with pytest.raises(ValueError, match=r"Class\(es\) \[5\] appear in the test split but not"):
        protocol.validate_inputs(X, y, X, y_test)
    with pytest.raises(ValueError, match="X_test has 3 features but X_train has 12"):
        protocol.validate_inputs(X, y, X[:, :3], y)
    with pytest.raises(ValueError, match="NaN/inf"):
        protocol.fit_select("knn", bad, y)


# ----------------------------------------------------------------------------- CLI on stores

def _make_store(path, *, seed=0, pooling="avg", shuffle_test=False, nan_row=None,
                cuts=("block1", "block2"), n_train=150, n_test=60, backbone="small_vgg"):
    """A tiny store: separable blobs at two cuts (block2 easier), train then test rows."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = np.tile(np.arange(3), n // 3 + 1)[:n]
    rng.shuffle(y[:n_train])
    widths = {"block1": 6, "block2": 10, "pixels": 16}
    blocks = ["block1_pool", "block2_pool"]
    data, meta = {}, {}
    for c in cuts:
        centers = np.random.default_rng(100 + widths[c]).normal(0, 3, size=(3, widths[c]))
        data[c] = (centers[y] + rng.normal(size=(n, widths[c]))).astype(np.float32)
        meta[c] = {"width": widths[c], "layer": f"{c}_pool" if c != "pixels" else "input",
                   "pooling": pooling if c != "pixels" else "flatten"}
        if c == "pixels":
            meta[c]["frozen_blocks"] = 0
    if shuffle_test:
        y = y.copy()
        y[n_train:] = rng.permutation(y[n_train:])
    if nan_row is not None:
        data[cuts[0]][nan_row, 0] = np.nan
    prov = {"extraction_key": f"key-{backbone}-{pooling}", "backbone": backbone,
            "weights": "runs/x/backbone", "backbone_info": {"weights_sha256": "abc123",
                                                            "blocks": blocks},
            "input_size": [28, 28, 1], "resize_method": "bilinear", "preprocess": "x/255",
            "channels": "as is", "dataset": "synthetic", "split_def": {"seed": 0},
            "pooling": pooling}
    n_val = n_train // 5    # the last fifth of the training rows is the recorded val split
    splits = ["train"] * (n_train - n_val) + ["val"] * n_val + ["test"] * n_test
    store.create(path, ids=[f"s{i}" for i in range(n)], labels=y, splits=splits,
                 class_names=CLASSES, cuts=meta, provenance=prov)
    store.write_rows(path, 0, data, check_finite=nan_row is None)
    return y


def _config(tmp_path, *sets):
    cfg = cconfig.load(None, ["classical.bootstrap=100", "classical.n_jobs=1", *sets])
    path = tmp_path / "config.toml"
    path.write_text(cconfig.to_toml(cfg))
    return path


def _run(run_dir, cfg_path, *extra):
    return main(["run", "--config", str(cfg_path), "--run-dir", str(run_dir), "--no-progress",
                 *extra])


def test_run_writes_complete_rows_models_predictions_and_is_idempotent(tmp_path):
    run_dir = tmp_path / "exp"
    run_dir.mkdir()
    y = _make_store(run_dir / "embeddings.h5")
    _make_store(run_dir / "pixels.h5", cuts=("pixels",), backbone="pixels")
    cfg = _config(tmp_path)
    assert _run(run_dir, cfg, "--classifiers", "logreg,xgboost") == 0
    rows = results.read(run_dir / "results.csv")
    assert len(rows) == 6                                 # 3 cuts x 2 classifiers
    for r in rows:
        assert set(r) == set(results.COLUMNS)
        assert r["stage"] == "classical" and r["classifier"] in ("logreg", "xgboost")
        assert 0.0 <= r["acc_ci_low"] <= r["accuracy"] <= r["acc_ci_high"] <= 1.0
        assert 0.0 <= r["macro_f1"] <= 1.0 and r["log_loss"] >= 0
        assert r["accuracy"] > 0.8
        # selection on the store's 30 val rows, final fit on train + val
        assert (r["n_train"], r["n_val"], r["n_test"], r["n_classes"]) == (150, 30, 60, 3)
        assert 0.8 < r["val_accuracy"] <= 1.0 and "val split" in r["selection"]
        assert r["experiment"] == results.experiment_id(cconfig.load(cfg))
        assert r["fit_seconds"] > 0 and r["predict_seconds"] >= 0
        assert json.loads(r["best_params"]) and r["config_hash"] and r["code_version"]
        pred = np.load(run_dir / r["predictions"])
        assert pred["proba"].shape == (60, 3) and list(pred["classes"]) == CLASSES
        assert np.array_equal(pred["y_true"], y[150:])
        assert np.mean(pred["y_pred"] == pred["y_true"]) == pytest.approx(r["accuracy"])
        bundle = joblib.load(run_dir / r["model"])
        assert bundle["extraction"]["cut"] == r["cut"]
        assert bundle["label_encoder"].classes_.tolist() == [0, 1, 2]
        assert (run_dir / Path(r["model"]).parent / "config.toml").exists()
    by_cut = {(r["cut"], r["classifier"]): r for r in rows}
    assert by_cut[("block1", "logreg")]["frozen_blocks"] == 1
    assert by_cut[("block2", "logreg")]["frozen_blocks"] == 2
    assert by_cut[("pixels", "logreg")]["frozen_blocks"] == 0
    assert by_cut[("pixels", "logreg")]["method"] == "pixels+logreg"
    assert by_cut[("block2", "xgboost")]["method"] == "frozen+xgboost"
    done = json.loads((run_dir / "classical" / "done.json").read_text())
    assert [r["status"] for r in done["runs"]] == ["new"] * 6

    before = (run_dir / "results.csv").read_text()
    assert _run(run_dir, cfg, "--classifiers", "logreg,xgboost") == 0
    assert (run_dir / "results.csv").read_text() == before          # nothing appended
    done = json.loads((run_dir / "classical" / "done.json").read_text())
    assert [r["status"] for r in done["runs"]] == ["skipped"] * 6
    # More classifiers only add runs; the finished ones keep their ids.
    assert _run(run_dir, cfg, "--classifiers", "logreg,knn", "--cuts", "block2") == 0
    assert len(results.read(run_dir / "results.csv")) == 7


def test_test_labels_never_influence_the_chosen_hyperparameters(tmp_path):
    chosen = []
    for shuffle in (False, True):
        run_dir = tmp_path / f"exp{int(shuffle)}"
        run_dir.mkdir()
        _make_store(run_dir / "embeddings.h5", shuffle_test=shuffle, cuts=("block1",))
        assert _run(run_dir, _config(tmp_path)) == 0
        rows = results.read(run_dir / "results.csv")
        assert len(rows) == len(pipelines.available())
        chosen.append({r["classifier"]: (r["best_params"], r["n_train"]) for r in rows})
    assert chosen[0] == chosen[1]


def test_run_refuses_a_missing_cut_and_an_unknown_classifier(tmp_path, capsys):
    run_dir = tmp_path / "exp"
    run_dir.mkdir()
    _make_store(run_dir / "embeddings.h5")
    cfg = _config(tmp_path)
    assert _run(run_dir, cfg, "--cuts", "block3") == 2
    err = capsys.readouterr().err
    assert "Cut 'block3' is not in" in err and "'block1', 'block2'" in err
    assert "make extract CUTS=block3" in err and "Did you mean 'block" in err
    assert _run(run_dir, cfg, "--classifiers", "randomforest") == 2
    assert "Did you mean 'random_forest'" in capsys.readouterr().err
    assert _run(tmp_path / "nowhere", cfg) == 2
    assert "make extract" in capsys.readouterr().err
    assert not (run_dir / "results.csv").exists()


def test_bad_data_fails_its_runs_and_make_retries(tmp_path, caplog):
    run_dir = tmp_path / "exp"
    run_dir.mkdir()
    _make_store(run_dir / "embeddings.h5", nan_row=7)
    cfg = _config(tmp_path)
    assert _run(run_dir, cfg, "--classifiers", "knn") == 1
    assert "NaN/inf values in 1 of 120 rows (first rows: [7]" in caplog.text
    rows = results.read(run_dir / "results.csv")
    assert [r["cut"] for r in rows] == ["block2"]             # the other cut still ran
    assert not (run_dir / "classical" / "done.json").exists()
    failed = json.loads((run_dir / "classical" / "failed.json").read_text())
    assert failed["failed"] == 1


def test_one_failing_classifier_does_not_stop_the_others(tmp_path, monkeypatch):
    run_dir = tmp_path / "exp"
    run_dir.mkdir()
    _make_store(run_dir / "embeddings.h5", cuts=("block1",))
    real = protocol.fit_select

    def flaky(name, *a, **kw):
        if name == "knn":
            raise RuntimeError("boom")
        return real(name, *a, **kw)

    monkeypatch.setattr(protocol, "fit_select", flaky)
    cfg = cconfig.load(_config(tmp_path))
    summary = run(cfg, run_dir, ["knn", "logreg"], progress=False)
    assert [r["status"] for r in summary["runs"]] == ["failed", "new"]
    assert "RuntimeError: boom" in summary["runs"][0]["error"]
    assert [r["classifier"] for r in results.read(run_dir / "results.csv")] == ["logreg"]
    monkeypatch.setattr(protocol, "fit_select", real)
    summary = run(cfg, run_dir, ["knn", "logreg"], progress=False)   # the retry fills the gap
    assert [r["status"] for r in summary["runs"]] == ["new", "skipped"]
    assert (run_dir / "classical" / "done.json").exists()
    assert not (run_dir / "classical" / "failed.json").exists()


def test_predict_applies_a_model_and_refuses_a_mismatched_store(tmp_path, capsys):
    run_dir = tmp_path / "exp"
    run_dir.mkdir()
    y = _make_store(run_dir / "embeddings.h5", cuts=("block2",))
    assert _run(run_dir, _config(tmp_path), "--classifiers", "logreg,linear_svm") == 0
    rows = {r["classifier"]: r for r in results.read(run_dir / "results.csv")}
    other = tmp_path / "new.h5"
    _make_store(other, seed=1, cuts=("block2",))          # same extraction, other samples
    out = tmp_path / "preds.csv"
    model = run_dir / rows["logreg"]["model"]
    assert predict_main(["--model", str(model), "--store", str(other), "--out",
                 str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "id,pred_label,pred_class,p_sandal,p_shirt,p_sneaker"
    assert len(lines) == 61
    first = lines[1].split(",")
    assert first[0] == "s150" and first[2] == CLASSES[int(first[1])]
    assert sum(float(v) for v in first[3:]) == pytest.approx(1.0, abs=1e-4)
    # linear SVM: no probabilities, just the prediction
    out2 = tmp_path / "svm.csv"
    assert predict_main(["--model", str(run_dir / rows["linear_svm"]["model"]), "--store",
                 str(other), "--split", "train", "--out", str(out2)]) == 0
    assert out2.read_text().splitlines()[0] == "id,pred_label,pred_class"
    assert len(out2.read_text().splitlines()) == 121

    bundle = joblib.load(model)
    X, _, _ = store.read(other, "block2", split="test")
    pred, proba = predict_embeddings(bundle, X)
    assert proba.shape == (60, 3) and np.mean(pred == y[150:]) > 0.8
    with pytest.raises(ValueError, match=r"takes embeddings of shape \(n, 10\)"):
        predict_embeddings(bundle, X[:, :3])

    mismatched = tmp_path / "maxpool.h5"
    _make_store(mismatched, pooling="max", cuts=("block2",))
    assert predict_main(["--model", str(model), "--store", str(mismatched), "--out",
                 str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert "pooling: model 'avg', store 'max'" in err and "Re-extract" in err
    no_cut = tmp_path / "block1only.h5"
    _make_store(no_cut, cuts=("block1",))
    assert predict_main(["--model", str(model), "--store", str(no_cut), "--out",
                 str(tmp_path / "x.csv")]) == 2
    assert "make extract CUTS=block2" in capsys.readouterr().err


def test_list_from_the_command_line():
    out = subprocess.run([sys.executable, "-m", "classical", "--list"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for name in pipelines.available():
        assert f"{name}\n  steps:" in out.stdout
    assert "np.logspace(-6, 5, 45)" in out.stdout
