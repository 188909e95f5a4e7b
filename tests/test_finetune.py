"""Fine-tuning depth semantics, BN in inference mode, scratch init, the probe start, a tiny
end-to-end sweep that is reproducible whatever the order of its depths."""
import json

import numpy as np
import pytest

from conftest import write_toy_npz
from cutpoint import config, results
from backbones.cut import block_layers
from backbones.weights import load_backbone
from finetune.finetune import DepthError, build_model, parse_depths, set_depth


def _base():
    return load_backbone("small_vgg", weights="none", input_shape=(16, 16, 1))


def test_depth_k_unfreezes_exactly_the_top_k_blocks():
    base, spec, _ = _base()
    groups = block_layers(base, spec)
    assert len(groups) == len(spec.blocks) == 4
    for k in range(len(groups) + 1):
        set_depth(base, spec, k)
        for i, group in enumerate(groups):
            for name in group:
                assert base.get_layer(name).trainable == (i >= len(groups) - k), (k, name)
    with pytest.raises(DepthError, match="out of range"):
        set_depth(base, spec, 5)


def test_batchnorm_stays_in_inference_mode_when_unfrozen():
    import keras
    base, spec, _ = _base()
    model = build_model(base, 3, seed=0, bn_inference=True)
    set_depth(base, spec, len(spec.blocks))  # everything trainable
    bns = [l for l in base.layers if isinstance(l, keras.layers.BatchNormalization)]
    convs = [l for l in base.layers if isinstance(l, keras.layers.Conv2D)]
    assert bns and convs and all(l.trainable for l in bns)
    before = [l.moving_mean.numpy().copy() for l in bns]
    kernels = [l.kernel.numpy().copy() for l in convs]
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (32, 16, 16, 1)).astype("float32")
    model.fit(x, np.arange(32) % 3, epochs=1, verbose=0)
    for b, l in zip(before, bns):
        np.testing.assert_array_equal(b, l.moving_mean.numpy())  # statistics untouched
    assert all(not np.array_equal(k, l.kernel.numpy()) for k, l in zip(kernels, convs))
    # Frozen dropout is off too: the backbone's features are the same in training mode.
    set_depth(base, spec, 0)
    feats = keras.Model(model.input, model.get_layer("backbone").output)
    a, b = feats(x[:4], training=True), feats(x[:4], training=True)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(np.asarray(a), np.asarray(base(x[:4], training=False)), rtol=1e-5)


def test_parse_depths():
    assert parse_depths([], 4) == [0, 1, 2, 3, 4, "scratch"]
    assert parse_depths(["0", "all", "scratch", "all"], 4) == [0, 4, "scratch"]
    with pytest.raises(DepthError, match="0 to 4.*'all' or 'scratch'"):
        parse_depths(["7"], 4)
    with pytest.raises(DepthError, match="deep"):
        parse_depths(["deep"], 4)


def _cfg(tmp_path, *sets):
    return config.load(None, [
        "dataset.name=npz", f"dataset.path={write_toy_npz(tmp_path / 't.npz', n_train=200, n_test=100)}",
        "dataset.source_classes=[0,1]", "dataset.target_classes=[2,3]", "dataset.val_fraction=0.2",
        "backbone.name=small_vgg", "backbone.weights=self", "train.epochs=2",
        "finetune.epochs=2", "finetune.batch_size=16", "finetune.learning_rates=[0.0003,0.001]",
        "finetune.scratch_learning_rates=[0.001,0.003]", "classical.bootstrap=200", *sets])


def _test_images(cfg, run):
    from cutpoint import splits
    target = splits.prepare(cfg, run_dir=run)["target"]
    split, y = np.asarray(target.split), np.asarray(target.labels)
    rows = {s: np.flatnonzero(split == s) for s in ("train", "val", "test")}
    return {s: (target.images(i).astype("float32"), y[i]) for s, i in rows.items()}


@pytest.mark.slow
def test_sweep_rows_probe_start_and_reproducibility(tmp_path, monkeypatch):
    """k = 0, 2 and scratch in one folder, then the same in the REVERSE order in a fresh
    folder (its own backbone training, its own probe): identical numbers and predictions. k = 0
    is the probe exactly (= the classical logreg on the same features); k >= 1 starts from it."""
    import joblib
    import keras

    from classical.protocol import fit_select
    from cutpoint.probe import fit_probe
    from finetune import finetune as ft
    from finetune.run import run_finetune

    starts = {}   # id(model) -> the head weights before its first training epoch
    real_epoch = ft._epoch

    def spy(model, train_ds, val_ds):
        starts.setdefault(id(model), [w.copy() for w in model.get_layer("head").get_weights()])
        return real_epoch(model, train_ds, val_ds)

    monkeypatch.setattr(ft, "_epoch", spy)
    cfg = _cfg(tmp_path)
    run = tmp_path / "run"
    depths = ["0", "2", "scratch"]
    rows = run_finetune(cfg, run, depths=depths)
    assert [r["method"] for r in rows] == ["finetune k=0", "finetune k=2", "scratch"]
    table = results.read(run / "results.csv")
    assert len(table) == 3 and set(table[0]) == set(results.COLUMNS)
    by = {r["method"]: r for r in table}
    n_test = by["scratch"]["n_test"]
    assert n_test > 40   # the toy set's test rows of classes 2 and 3
    for k in (0, 2):
        r = by[f"finetune k={k}"]
        assert r["frozen_blocks"] == 4 - k and r["depth"] == str(k)
        assert 0 <= r["val_accuracy"] <= 1 and r["n_val"] == 22 and r["n_test"] == n_test
        params = json.loads(r["best_params"])
        if k == 0:
            assert r["n_train"] == 89 + 22 and r["epochs"] == 0 and "C" in params
            assert "logistic regression" in r["selection"] and "train + val" in r["selection"]
        else:
            assert r["n_train"] == 89 and 1 <= r["epochs"] <= 2
            assert params["learning_rate"] in (0.0003, 0.001)
            assert set(params["lr_val_accuracy"]) == {"0.0003", "0.001"}
            assert "starts from the k = 0 probe" in r["selection"]
            assert "trained on train only" in r["selection"]
            assert r["trainable_params"] > by[f"finetune k={k - 2}"]["trainable_params"]
    s = by["scratch"]
    assert s["frozen_blocks"] == 0 and s["n_train"] == 89 and 0 <= s["val_accuracy"] <= 1
    assert "random init" in s["selection"]
    assert s["trainable_params"] > by["finetune k=2"]["trainable_params"]
    for r in table:
        assert r["acc_ci_low"] <= r["accuracy"] <= r["acc_ci_high"]
        assert np.load(run / r["predictions"])["proba"].shape == (r["n_test"], 2)
    assert by["finetune k=0"]["accuracy"] > 0.75 and by["finetune k=2"]["accuracy"] > 0.75

    # (d) every k >= 1 candidate (2 learning rates) started from the probe's head;
    # the scratch candidates did not.
    k0 = run / "finetune" / by["finetune k=0"]["run_id"]
    probe = np.load(k0 / "probe.npz")
    same = [np.array_equal(w[0], probe["kernel"]) and np.array_equal(w[1], probe["bias"])
            for w in starts.values()]
    assert len(same) == 4 and sum(same) == 2

    # (c) k = 0's predictions are those of the probe's sklearn model on the head's features,
    # which is the classical logreg (same rule) refitted here on the same features.
    imgs = _test_images(cfg, run)
    model = keras.models.load_model(k0 / "model.keras")
    feats = {s: np.asarray(ft.feature_model(model).predict(x, verbose=0)) for s, (x, _) in
             imgs.items()}
    pred = np.load(k0 / "predictions.npz")
    sk = joblib.load(k0 / "probe.joblib")
    np.testing.assert_array_equal(sk.predict(feats["test"]), pred["y_pred"])
    np.testing.assert_allclose(sk.predict_proba(feats["test"]), pred["proba"], atol=1e-4)
    again = fit_probe(feats["train"], imgs["train"][1], feats["val"], imgs["val"][1], 2)
    assert again.C == float(probe["C"]) and again.val_accuracy == by["finetune k=0"]["val_accuracy"]
    np.testing.assert_allclose(again.kernel, probe["kernel"], rtol=1e-4, atol=1e-6)
    clf, info = fit_select("logreg", feats["train"], imgs["train"][1], feats["val"],
                           imgs["val"][1], seed=0)
    assert info["best_params"] == {"clf__C": again.C}
    np.testing.assert_array_equal(clf.predict(feats["test"]), pred["y_pred"])
    assert np.mean(pred["y_pred"] == imgs["test"][1]) == by["finetune k=0"]["accuracy"]

    assert run_finetune(cfg, run, depths=depths) == []  # resumable: nothing redone
    assert len(results.read(run / "results.csv")) == 3

    # (a) + (b): a fresh folder, another order: the same numbers and predictions.
    other = tmp_path / "other"
    rerun = {r["method"]: r for r in run_finetune(cfg, other, depths=["scratch", "2", "0"])}
    assert set(rerun) == {"scratch", "finetune k=2", "finetune k=0"}
    for method, r in rerun.items():
        for col in ("val_accuracy", "accuracy", "log_loss", "epochs", "best_params",
                    "n_train", "n_val"):
            assert r[col] == by[method][col], (method, col)
        a, b = np.load(run / by[method]["predictions"]), np.load(other / r["predictions"])
        np.testing.assert_array_equal(a["proba"], b["proba"])


class _Stop(Exception):
    pass


@pytest.mark.slow
def test_scratch_reinitialises_every_weight(tmp_path, monkeypatch):
    """The real scratch path (run_finetune -> train_at_depth) builds a seeded random backbone:
    not the trained one, another with another seed, the same again with the same seed."""
    from backbones.train import ensure_self_trained
    from finetune import finetune as ft
    from finetune.run import run_finetune

    seen = []

    def capture(model, train_ds, val_ds):   # the model as built, before its first epoch
        seen.append({w.path: w.numpy().copy() for w in model.weights
                     if not w.path.startswith("head")})
        raise _Stop

    monkeypatch.setattr(ft, "_epoch", capture)
    cfg = _cfg(tmp_path)
    run = tmp_path / "run"
    with pytest.raises(_Stop):
        run_finetune(cfg, run, depths=["scratch"])
    built = seen.pop()
    from cutpoint import splits
    weights = ensure_self_trained(cfg, run, splits.prepare(cfg, run_dir=run))
    trained, _, _ = load_backbone("small_vgg", weights=str(weights), input_shape=(16, 16, 1))
    by_path = {w.path: w.numpy() for w in trained.weights}
    kernels = [p for p in built if p.endswith("kernel")]
    assert len(kernels) == 7   # 6 convolutions + fc
    for p in kernels:
        assert p in by_path and not np.array_equal(built[p], by_path[p]), p

    def scratch(seed):
        fcfg = cfg["finetune"]
        with pytest.raises(_Stop):
            ft.train_at_depth(lambda: load_backbone("small_vgg", input_shape=(16, 16, 1))[0],
                              None, "scratch", 2, lambda *a: None, fcfg, seed)
        return seen.pop()

    same, other = scratch(0), scratch(1)
    assert set(same) == set(built)
    for p in built:
        np.testing.assert_array_equal(same[p], built[p])
    assert all(not np.array_equal(other[p], built[p]) for p in kernels)
