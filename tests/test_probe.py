"""The core linear probe: C chosen on validation, refit on train + val, folded head weights exact."""
import numpy as np
import pytest

from cutpoint.probe import KORNBLITH_C, fit_probe, fold, sweep_warm_c


def _data(n_classes, seed=0, n=240, d=12):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    centres = rng.normal(0, 1.5, (n_classes, d))
    X = centres[y] + rng.normal(0, 1, (n, d))
    X = X * rng.uniform(0.01, 50, d) + rng.uniform(-20, 20, d)   # very unequal scales
    X[:, 0] = 3.0                                                # a constant feature (sigma 0)
    return X.astype(np.float32), y


@pytest.mark.parametrize("n_classes", [2, 4])
def test_folded_head_reproduces_the_sklearn_pipeline(n_classes):
    import keras

    X, y = _data(n_classes)
    probe = fit_probe(X[:160], y[:160], X[160:200], y[160:200], n_classes, seed=0)
    assert probe.C in KORNBLITH_C and probe.n_train == 200 and probe.n_val == 40
    assert probe.kernel.shape == (12, n_classes) and probe.bias.shape == (n_classes,)
    want = probe.model.predict_proba(X[200:])
    head = keras.layers.Dense(n_classes, activation="softmax")
    head.build((None, 12))
    head.set_weights([probe.kernel, probe.bias])
    got = np.asarray(head(X[200:]))
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_array_equal(got.argmax(1), probe.model.predict(X[200:]))


def test_c_is_chosen_on_validation_like_the_full_sweep_and_refit_on_train_plus_val():
    from sklearn.preprocessing import StandardScaler

    from cutpoint.probe import logreg
    X, y = _data(3, seed=1)
    probe = fit_probe(X[:160], y[:160], X[160:200], y[160:200], 3, seed=0)
    sc = StandardScaler().fit(X[:160])
    grid = [{"C": c} for c in KORNBLITH_C]
    full = sweep_warm_c(logreg(0), sc.transform(X[:160]), y[:160], sc.transform(X[160:200]),
                        y[160:200], grid, patience=0)
    assert probe.C == KORNBLITH_C[int(np.argmax(full))]
    assert probe.val_accuracy == max(full)
    scaler = probe.model[0]
    np.testing.assert_allclose(scaler.mean_, X[:200].astype(np.float64).mean(0), rtol=1e-6)


def test_a_class_missing_from_training_is_never_predicted():
    X, y = _data(3, seed=2)
    keep = y != 1
    X, y = X[keep], np.where(y[keep] == 2, 2, 0)
    probe = fit_probe(X[:100], y[:100], X[100:140], y[100:140], 3, seed=0)
    logits = X[140:] @ probe.kernel + probe.bias
    assert set(logits.argmax(1)) <= {0, 2}
    assert probe.kernel[:, 1].tolist() == [0.0] * X.shape[1] and probe.bias[1] < -1e8


def test_fold_is_the_affine_map_of_scaler_then_logreg():
    X, y = _data(4, seed=3)
    probe = fit_probe(X[:160], y[:160], X[160:200], y[160:200], 4)
    k, b = fold(probe.model, 4)
    clf = probe.model[-1]
    np.testing.assert_allclose(X[200:].astype(np.float64) @ k + b,
                               clf.decision_function(probe.model[0].transform(X[200:])),
                               rtol=1e-4, atol=1e-3)
