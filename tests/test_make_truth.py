"""Make tells the truth: extract's target appears only when the stage completed; a killed
extraction is redone by the next `make extract` and ends identical to an uninterrupted one; a
failed classical run says why on the console and exits non-zero."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import write_toy_npz
from cutpoint import config
from embeddings import store

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _make(run, conf, *, dry):
    # -o: never rebuild the virtualenv or install data from a test; the resolved config is
    # written by the test itself (assumed old, so only the extraction's own state decides).
    cmd = ["make", "-o", ".venv/.stamp-requirements", "-o", "data", "-o", f"{run}/config.toml",
           "extract", f"CONFIG={conf}", f"RUN={run}"]
    return subprocess.run(cmd + (["-n"] if dry else []), cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def _matrices(path):
    return {c: store.read(path, c)[0] for c in store.cuts(path)} | {
        "ids": store.read_samples(path)["ids"]}


def test_killed_extraction_is_redone_by_make_and_ends_identical(tmp_path, monkeypatch):
    from extract import extractor
    npz = write_toy_npz(tmp_path / "toy.npz")
    conf = tmp_path / "toy.toml"
    conf.write_text(f'[dataset]\nname = "npz"\npath = "{npz}"\nsource_classes = []\n'
                    'target_classes = []\n[backbone]\nname = "small_vgg"\nweights = "none"\n'
                    '[extract]\nbatch_size = 16\nchunk_rows = 32\npixels = false\n')
    run = tmp_path / "run"
    from cutpoint.__main__ import main as cutpoint_main
    cutpoint_main(["resolve", "--config", str(conf), "--out", str(run / "config.toml"),
                   "--stamps", str(run / ".stage")])
    cfg = config.load(run / "config.toml")

    real = store.write_rows
    calls = {"n": 0}

    def killed(path, start, arrays, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill")
        return real(path, start, arrays, **kw)

    monkeypatch.setattr(store, "write_rows", killed)
    with pytest.raises(KeyboardInterrupt):
        extractor.extract(cfg, run)
    monkeypatch.setattr(store, "write_rows", real)
    assert store.rows_done(run / "embeddings.h5") == 64 and not (run / "extract.json").exists()

    assert "-m extract" in _make(run, conf, dry=True).stdout     # make knows it is not done
    out = _make(run, conf, dry=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Resuming" in out.stderr and (run / "extract.json").exists()
    assert "-m extract" not in _make(run, conf, dry=True).stdout  # now it is

    extractor.extract(cfg, tmp_path / "uninterrupted")
    a, b = _matrices(tmp_path / "uninterrupted" / "embeddings.h5"), _matrices(run / "embeddings.h5")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k

    (run / "embeddings.h5").unlink()                               # deleted by hand: redone
    assert "-m extract" in _make(run, conf, dry=True).stdout


def test_failed_classical_run_prints_the_reason_and_exits_nonzero(tmp_path, capsys):
    from classical.__main__ import main
    run = tmp_path / "run"
    run.mkdir()
    store.create(run / "embeddings.h5", ids=[f"s{i}" for i in range(8)], labels=[0, 1] * 4,
                 splits=["train"] * 4 + ["val"] * 2 + ["test"] * 2, class_names=["a", "b"],
                 cuts={"c1": {"width": 3, "layer": "l1", "pooling": "avg"}},
                 provenance={"backbone": "x", "extraction_key": "k"})
    store.write_rows(run / "embeddings.h5", 0, {"c1": np.zeros((4, 3), np.float32)})  # 4 of 8
    (tmp_path / "c.toml").write_text(config.to_toml(config.load(
        None, ["classical.classifiers=logreg,knn"])))
    code = main(["run", "--config", str(tmp_path / "c.toml"), "--run-dir", str(run),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: 2 of 2 classical runs failed" in err
    assert "is incomplete" in err and "`make extract`" in err and "make classify" in err
    assert "embeddings/c1 logreg" in err and not (run / "classical" / "done.json").exists()


def test_a_config_edit_reruns_only_the_stages_that_read_it(tmp_path):
    """Each stage's target depends on its own stamp (the sections it reads): an [umap] edit
    leaves extract and classify done; a [classical] edit re-runs classify, never extract."""
    import os
    import sys
    import time
    conf, run = tmp_path / "exp.toml", tmp_path / "run"
    base = '[dataset]\nname = "digits"\n'

    def resolve(extra=""):
        conf.write_text(base + extra)
        subprocess.run([sys.executable, "-m", "cutpoint", "resolve", "--config", str(conf),
                        "--out", str(run / "config.toml"), "--stamps", str(run / ".stage")],
                       cwd=ROOT, check=True, capture_output=True)

    def age(paths, seconds_ago):
        t = time.time() - seconds_ago
        for p in paths:
            os.utime(p, (t, t))

    def dry(target):
        return subprocess.run(
            ["make", "-n", "-o", ".venv/.stamp-requirements", "-o", "data", "-o",
             f"{run}/config.toml", target, f"CONFIG={conf}", f"RUN={run}"],
            cwd=ROOT, capture_output=True, text=True, timeout=120).stdout

    resolve()
    done = [run / "embeddings.h5", run / "extract.json", run / "classical" / "done.json"]
    for p in done:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("{}")
    age([run / "config.toml", *(run / ".stage").iterdir()], 100)
    age(done, 0)        # done now: newer than the code, older than any later stamp
    assert "-m classical" not in dry("classify") and "-m extract" not in dry("classify")

    resolve('[umap]\nn_neighbors = 5\n')
    assert "-m classical" not in dry("classify")
    assert "-m report umap" in dry("umap")

    resolve('[umap]\nn_neighbors = 5\n[classical]\nbootstrap = 10\n')
    out = dry("classify")
    assert "-m classical" in out and "-m extract" not in out
