"""Fine-tuning depth semantics, BN in inference mode, scratch init, a tiny end-to-end sweep."""
import numpy as np
import pytest

from conftest import write_toy_npz
from cutpoint import config, results
from extract.backbones import block_layers, load_backbone
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
        "finetune.epochs=3", "finetune.head_epochs=2", "finetune.batch_size=16",
        "finetune.finetune_learning_rate=0.001",
        "classical.bootstrap=200", *sets])


@pytest.mark.slow
def test_tiny_sweep_beats_chance_lands_in_schema_and_skips_on_rerun(tmp_path):
    from finetune.run import run_finetune
    cfg = _cfg(tmp_path)
    run = tmp_path / "run"
    rows = run_finetune(cfg, run, depths=["0", "all", "scratch"])
    assert [r["method"] for r in rows] == ["finetune k=0", "finetune k=4", "scratch"]
    table = results.read(run / "results.csv")
    assert len(table) == 3 and set(table[0]) == set(results.COLUMNS)
    by = {r["method"]: r for r in table}
    assert by["finetune k=0"]["frozen_blocks"] == 4 and by["finetune k=4"]["frozen_blocks"] == 0
    assert by["finetune k=0"]["trainable_params"] < by["finetune k=4"]["trainable_params"]
    assert by["scratch"]["trainable_params"] >= by["finetune k=4"]["trainable_params"]
    for r in table:
        assert r["acc_ci_low"] <= r["accuracy"] <= r["acc_ci_high"]
        pred = np.load(run / r["predictions"])
        assert pred["proba"].shape == (r["n_test"], 2)
    assert by["finetune k=4"]["accuracy"] > 0.75  # two classes: chance is 0.5
    assert run_finetune(cfg, run, depths=["0", "all", "scratch"]) == []  # nothing redone
    assert len(results.read(run / "results.csv")) == 3


def test_scratch_reinitialises_every_weight(tmp_path):
    base, spec, _ = _base()
    path = tmp_path / "w.weights.h5"
    base.save_weights(path)
    loaded, _, _ = load_backbone("small_vgg", weights=str(path), input_shape=(16, 16, 1))
    fresh, _, _ = load_backbone("small_vgg", weights="none", input_shape=(16, 16, 1))
    for a, b, c in zip(base.weights, loaded.weights, fresh.weights):
        assert np.array_equal(a.numpy(), b.numpy())
        if "kernel" in a.path:
            assert not np.array_equal(a.numpy(), c.numpy()), a.path
