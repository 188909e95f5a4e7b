"""Prediction on new, unlabelled images: a flat folder or a list of files; damaged files are
skipped and listed beside the predictions, never fatal."""
import csv
import warnings

import numpy as np
from PIL import Image

from cutpoint import config


def _img(path, c, rng, size=16):
    x = rng.integers(0, 60, (size, size, 3))
    x[: size // 2] += 150 * (c == 0)
    x[size // 2:] += 150 * (c == 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(x.astype(np.uint8)).save(path)


def test_predict_on_a_flat_folder_and_a_file_list_skips_damaged_files(tmp_path, capsys):
    from classical.runner import run
    from predict.__main__ import main
    from extract.extractor import extract
    rng = np.random.default_rng(0)
    for c, name in enumerate(["top", "bottom"]):
        for i in range(12):
            _img(tmp_path / "train" / name / f"{i}.png", c, rng)
    cfg = config.load(None, [
        "dataset.name=folder", f"dataset.path={tmp_path / 'train'}", "dataset.source_classes=[]",
        "dataset.target_classes=[]", "backbone.name=plain_cnn", "backbone.weights=none",
        "extract.pixels=false", "classical.classifiers=[\"logreg\"]", "classical.bootstrap=10"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extract(cfg, tmp_path / "run")
    summary = run(cfg, tmp_path / "run", progress=False)
    assert summary["failed"] == 0
    model = tmp_path / "run" / "classical" / summary["runs"][0]["run_id"] / "model.joblib"

    new = tmp_path / "new"                     # flat: no class sub-folders
    _img(new / "a.png", 0, rng)
    _img(new / "b.png", 1, rng)
    _img(new / "big.png", 1, rng, size=40)     # another size: resized like the store's
    full = tmp_path / "ok.jpg"
    _img(full, 0, rng)
    (new / "half.jpg").write_bytes(full.read_bytes()[:len(full.read_bytes()) // 2])
    (new / "readme.txt").write_text("not an image")
    out = tmp_path / "preds.csv"
    code = main(["--model", str(model), "--images", str(new), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    rows = list(csv.DictReader(open(out)))
    assert [r["id"] for r in rows] == ["a.png", "b.png", "big.png"]
    assert rows[0]["pred_class"] in ("top", "bottom")
    skipped = list(csv.DictReader(open(tmp_path / "preds.skipped.csv")))
    reasons = {r["path"]: r["reason"] for r in skipped}
    assert reasons.keys() == {"half.jpg", "readme.txt"} and "truncated" in reasons["half.jpg"].lower()
    assert "skipped 2 file(s)" in err and "preds.skipped.csv" in err

    out2 = tmp_path / "list.csv"               # a list of files, one of them missing
    code = main(["--model", str(model), "--images", str(new / "a.png"), str(full),
                 str(tmp_path / "gone.png"), "--out", str(out2)])
    assert code == 0
    assert [r["id"] for r in csv.DictReader(open(out2))] == [str(new / "a.png"), str(full)]
    assert "file not found" in (tmp_path / "list.skipped.csv").read_text()
