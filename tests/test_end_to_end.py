"""The stages chained as a user runs them, on a tiny npz: extract → classify → predict → report."""
import csv
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, write_toy_npz
from cutpoint import config, results


@pytest.mark.slow
def test_extract_classify_predict_images_and_report(tmp_path):
    npz = write_toy_npz(tmp_path / "toy.npz", n_train=120, n_test=40)
    run = tmp_path / "run"
    cfg = config.load(None, [
        "dataset.name=npz", f"dataset.path={npz}", "dataset.source_classes=[0,1]",
        "dataset.target_classes=[2,3]", "backbone.name=small_vgg", "train.epochs=2",
        "extract.batch_size=32", "classical.classifiers=logreg,knn", "classical.bootstrap=100"])
    run.mkdir()
    (run / "config.toml").write_text(config.to_toml(cfg))

    def stage(*args):
        r = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                           text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        return r

    stage("extract", "--config", str(run / "config.toml"), "--run-dir", str(run))
    stage("classical", "run", "--config", str(run / "config.toml"), "--run-dir", str(run),
          "--no-progress")
    rows = results.read(run / "results.csv")
    assert {r["classifier"] for r in rows} == {"logreg", "knn"}
    assert {r["cut"] for r in rows} == {"block1", "block2", "block3", "fc", "pixels"}
    best = max((r for r in rows if r["cut"] != "pixels"), key=lambda r: r["accuracy"])
    assert best["accuracy"] > 0.8  # two separable classes

    # The saved model applied to raw images gives the predictions it gave on the store.
    out = tmp_path / "pred.csv"
    stage("predict", "--model", str(run / best["model"]), "--images", str(npz), "--out",
          str(out))
    with open(out) as f:
        got = {r["id"]: r["pred_class"] for r in csv.DictReader(f)}
    saved = np.load(run / best["predictions"], allow_pickle=True)
    names = list(saved["classes"])
    # Ids of the npz loader are "<file>/<split>/<row>", the same as in the experiment's store.
    for i, p in zip(saved["ids"], saved["y_pred"]):
        assert got[str(i)] == names[int(p)]

    stage("report", "build", "--config", str(run / "config.toml"), "--run-dir", str(run))
    md = (run / "report" / "report.md").read_text()
    assert f"{best['accuracy']:.4f}" in md
