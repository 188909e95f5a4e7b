"""cutpoint.metrics: bootstrap CI, per-class scores, log-loss, McNemar on known tables."""
import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from cutpoint.metrics import bootstrap_accuracy_ci, classification_metrics, mcnemar


def _predictions(n, acc, seed=0, k=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    wrong = rng.random(n) > acc
    pred = np.where(wrong, (y + 1) % k, y)
    return y, pred


def test_bootstrap_ci_contains_accuracy_and_narrows_with_n():
    widths = []
    for n in (100, 1000, 10000):
        y, pred = _predictions(n, 0.8)
        m = classification_metrics(y, pred, n_boot=500, seed=0)
        assert m["acc_ci_low"] <= m["accuracy"] <= m["acc_ci_high"]
        assert 0.0 <= m["acc_ci_low"] < m["acc_ci_high"] <= 1.0
        widths.append(m["acc_ci_high"] - m["acc_ci_low"])
    assert widths[0] > widths[1] > widths[2]
    # ~ 2 * 1.96 * sqrt(p(1-p)/n) for the binomial: the bootstrap agrees within 25 %
    assert widths[2] == pytest.approx(2 * 1.96 * math.sqrt(0.8 * 0.2 / 10000), rel=0.25)


def test_bootstrap_is_seeded_and_blocked_draws_match(monkeypatch):
    from cutpoint import metrics
    correct = np.random.default_rng(1).random(3000) < 0.7
    a = bootstrap_accuracy_ci(correct, n_boot=300, seed=5)
    assert a == bootstrap_accuracy_ci(correct, n_boot=300, seed=5)
    assert a != bootstrap_accuracy_ci(correct, n_boot=300, seed=6)
    # Memory-bounded blocks (here 7 resamples per block, 43 blocks) draw exactly the resamples
    # of one big block: the CI does not depend on the block size.
    monkeypatch.setattr(metrics, "_BOOT_BLOCK", 7 * len(correct))
    assert bootstrap_accuracy_ci(correct, n_boot=300, seed=5) == a
    with pytest.raises(ValueError, match="0 samples"):
        bootstrap_accuracy_ci([], n_boot=10)


def test_metrics_per_class_confusion_and_log_loss():
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0, 2])
    proba = np.array([[.8, .1, .1], [.3, .6, .1], [.1, .8, .1], [.2, .7, .1],
                      [.1, .1, .8], [.5, .2, .3], [.2, .2, .6]])
    m = classification_metrics(y, pred, proba=proba, labels=[0, 1, 2],
                               class_names=["cat", "dog", "emu"], n_boot=100)
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    expected = f1_score(y, pred, average=None)
    assert m["per_class_f1"] == pytest.approx(dict(zip(["cat", "dog", "emu"], expected)))
    assert m["macro_f1"] == pytest.approx(expected.mean())
    manual = -np.mean(np.log(proba[np.arange(len(y)), y]))
    assert m["log_loss"] == pytest.approx(manual)
    assert classification_metrics(y, pred, n_boot=10)["log_loss"] is None
    with pytest.raises(ValueError, match="proba must have shape"):
        classification_metrics(y, pred, proba=proba[:, :2], labels=[0, 1, 2])
    with pytest.raises(ValueError, match="equal length"):
        classification_metrics(y, pred[:-1])


def test_metrics_keep_classes_the_predictions_never_use():
    y = np.array([3, 3, 7, 7])
    m = classification_metrics(y, np.array([3, 3, 3, 3]), labels=[3, 7, 11],
                               class_names={3: "a", 7: "b", 11: "c"}, n_boot=10)
    assert list(m["per_class_f1"]) == ["a", "b", "c"]
    assert m["per_class_f1"]["b"] == 0.0
    assert len(m["confusion_matrix"]) == 3


def test_mcnemar_exact_on_a_known_table():
    # A right / B wrong on 10 samples, the reverse on 2: exact two-sided binomial test.
    y = np.zeros(40, int)
    a = np.zeros(40, int)
    b = np.zeros(40, int)
    b[:10] = 1          # b = 10
    a[10:12] = 1        # c = 2
    r = mcnemar(y, a, b)
    assert (r["b"], r["c"]) == (10, 2)
    assert r["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 2 ** 12)
    assert r["statistic"] == 2


def test_mcnemar_chi_square_with_continuity_correction():
    y = np.zeros(100, int)
    a = np.zeros(100, int)
    b = np.zeros(100, int)
    b[:30] = 1          # b = 30
    a[30:40] = 1        # c = 10
    r = mcnemar(y, a, b)
    stat = (abs(30 - 10) - 1) ** 2 / 40
    assert r["statistic"] == pytest.approx(stat)
    assert r["p_value"] == pytest.approx(math.erfc(math.sqrt(stat / 2)))   # chi2(1) tail
    # symmetric in the two methods
    assert mcnemar(y, b, a)["p_value"] == pytest.approx(r["p_value"])


def test_mcnemar_identical_predictions():
    y = np.array([0, 1, 1, 0])
    r = mcnemar(y, y, y)
    assert (r["b"], r["c"], r["p_value"]) == (0, 0, 1.0)
    with pytest.raises(ValueError, match="equal length"):
        mcnemar(y, y, y[:3])
