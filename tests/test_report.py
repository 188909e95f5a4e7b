"""The report stage on a synthetic run folder: a tiny store, a results table covering classical
models at several cuts, fine-tuning at several depths and scratch, and their predictions."""
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from cutpoint import config, results
from cutpoint.metrics import bootstrap_accuracy_ci, mcnemar
from embeddings import store
from report import build_report, run_umap
from report.__main__ import main as report_main
from report.inputs import dataset_images
from report.umap_stage import png_name, stratified_subsample

CLASSES = ["sandal", "shirt", "sneaker", "bag"]
N_TRAIN, N_TEST = 40, 48
CUTS = {"block1": 12, "block2": 8, "block3": 6}
PNG_SIG = b"\x89PNG\r\n\x1a\n"


def _make_store(path, cuts, rng):
    """Train rows then test rows; each class a Gaussian blob whose spread shrinks with depth."""
    n = N_TRAIN + N_TEST
    labels = np.tile(np.arange(len(CLASSES)), n // len(CLASSES))
    ids = [f"img{i:04d}" for i in range(n)]
    splits = ["train"] * N_TRAIN + ["test"] * N_TEST
    store.create(path, ids=ids, labels=labels, splits=splits, class_names=CLASSES,
                 cuts={c: {"width": w, "layer": f"{c}_pool", "pooling": "avg"}
                       for c, w in cuts.items()},
                 provenance={"backbone": "synthetic", "dataset": "synthetic"})
    arrays = {}
    for k, (c, w) in enumerate(cuts.items()):
        centres = rng.normal(0, 3, size=(len(CLASSES), w))
        arrays[c] = (centres[labels] + rng.normal(0, 1.5 / (k + 1), size=(n, w))).astype("float32")
    store.write_rows(path, 0, arrays)
    test_ids = np.array(ids[N_TRAIN:])
    return test_ids, labels[N_TRAIN:]


def _predict(rng, y_true, error_rate, with_proba=True):
    """Predictions with about `error_rate` mistakes, and probabilities consistent with them."""
    y_pred = y_true.copy()
    wrong = rng.random(len(y_true)) < error_rate
    y_pred[wrong] = (y_true[wrong] + rng.integers(1, len(CLASSES), wrong.sum())) % len(CLASSES)
    if not with_proba:
        return y_pred, np.zeros((len(y_true), 0), dtype="float32")
    logits = rng.normal(0, 1, size=(len(y_true), len(CLASSES)))
    logits[np.arange(len(y_true)), y_pred] = logits.max(1) + rng.uniform(0.05, 3, len(y_true))
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y_pred, proba.astype("float32")


def _add_row(run_dir, cfg, rng, ids, y_true, *, stage, method, cut="", classifier="", depth="",
             frozen_blocks, error_rate, fit_seconds, val, trainable_params=None,
             with_proba=True, shuffle=False, experiment=None):
    run_id = f"{stage}-{method}-{cut}-{depth}".replace(" ", "_").replace("=", "")
    y_pred, proba = _predict(rng, y_true, error_rate, with_proba)
    order = rng.permutation(len(ids)) if shuffle else np.arange(len(ids))  # align by id, not row
    pred_path = run_dir / "preds" / f"{run_id}.npz"
    pred_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(pred_path, ids=ids[order], y_true=y_true[order], y_pred=y_pred[order],
             proba=proba[order], classes=np.arange(len(CLASSES)))
    correct = y_pred == y_true
    low, high = bootstrap_accuracy_ci(correct, n_boot=200, seed=0)
    from sklearn.metrics import f1_score
    row = results.new_row(
        cfg, run_id=run_id, stage=stage, method=method, backbone="small_vgg", cut=cut,
        classifier=classifier, depth=depth, frozen_blocks=frozen_blocks, val_accuracy=val,
        selection=f"rule of {stage}", n_train=N_TRAIN,
        accuracy=float(correct.mean()), acc_ci_low=low, acc_ci_high=high,
        macro_f1=float(f1_score(y_true, y_pred, average="macro")),
        log_loss=0.5 if with_proba else None, fit_seconds=fit_seconds,
        predict_seconds=0.01, trainable_params=trainable_params,
        predictions=str(pred_path.relative_to(run_dir)), n_test=len(ids))
    if experiment:
        row["experiment"] = experiment
    results.append(run_dir / "results.csv", row)
    return run_id


# Validation scores deliberately disagree with test: logreg is most accurate on TEST at block1
# but best on VALIDATION at block2; fine-tuning is best on test at k=3 but on validation at k=1.
# A report that chose by test would name block1 / k=3.
VAL = {("frozen+logreg", "block1"): 0.70, ("frozen+logreg", "block2"): 0.95,
       ("frozen+logreg", "block3"): 0.80, ("frozen+knn", "block1"): 0.60,
       ("frozen+knn", "block2"): 0.65, ("frozen+knn", "block3"): 0.62,
       ("frozen+logreg", "pixels"): 0.50, ("finetune k=0", ""): 0.80,
       ("finetune k=1", ""): 0.93, ("finetune k=2", ""): 0.85, ("finetune k=3", ""): 0.90,
       ("scratch", ""): 0.88}


def _make_run(run_dir, *, finetune=True):
    rng = np.random.default_rng(0)
    run_dir.mkdir(parents=True)
    (run_dir / "config.toml").write_text(
        '[experiment]\nname = "synthetic"\n[dataset]\nname = "npz"\n'
        f'path = "{run_dir / "no_such_data.npz"}"\n'
        '[umap]\nn_neighbors = 8\n[report]\ngallery_size = 6\n')
    cfg = config.load(run_dir / "config.toml")
    ids, y = _make_store(run_dir / "embeddings.h5", CUTS, rng)
    _make_store(run_dir / "pixels.h5", {"pixels": 16}, rng)
    add = lambda **kw: _add_row(run_dir, cfg, rng, ids, y,  # noqa: E731
                                val=VAL[(kw["method"], kw.get("cut", ""))], **kw)
    for i, cut in enumerate(CUTS, 1):
        add(stage="classical", method="frozen+logreg", cut=cut, classifier="logreg",
            frozen_blocks=i, error_rate=0.1 + 0.08 * i, fit_seconds=0.5 * i)
        add(stage="classical", method="frozen+knn", cut=cut, classifier="knn", frozen_blocks=i,
            error_rate=0.2 + 0.05 * i, fit_seconds=0.05, with_proba=False)
    add(stage="classical", method="frozen+logreg", cut="pixels", classifier="logreg",
        frozen_blocks=0, error_rate=0.4, fit_seconds=0.2)
    if finetune:
        for k in (0, 1, 2, 3):
            add(stage="finetune", method=f"finetune k={k}", depth=str(k), frozen_blocks=3 - k,
                error_rate=0.15 - 0.03 * k, fit_seconds=20.0 + 10 * k,
                trainable_params=500 + 20000 * k, shuffle=True)
        add(stage="scratch", method="scratch", depth="scratch", frozen_blocks=0,
            error_rate=0.12, fit_seconds=60.0, trainable_params=61000)
    # a row of another experiment (e.g. an older protocol): near-perfect, never compared
    _add_row(run_dir, cfg, rng, ids, y, stage="classical", method="frozen+xgboost", cut="block3",
             classifier="xgboost", frozen_blocks=3, error_rate=0.0, fit_seconds=1.0, val=0.99,
             experiment="ex-older")
    return cfg


REQUESTED: list = []   # the ids each gallery asked images for, in order


def _images_for_ids(ids):
    """Synthetic 28×28 images: a bright square whose position depends on the id."""
    REQUESTED.append([str(i) for i in ids])
    out = np.zeros((len(ids), 28, 28), dtype=np.uint8)
    for k, i in enumerate(ids):
        j = int(str(i)[3:]) % 20
        out[k, j:j + 8, j:j + 8] = 200
    return out


def _check_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIG, f"{path.name} is not a PNG"
    img = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert img.std() > 5, f"{path.name} looks blank"


def _figures(md_text):
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md_text)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "synthetic"
    cfg = _make_run(run_dir)
    summary = run_umap(run_dir, cfg, log=lambda *_: None)
    md = build_report(run_dir, cfg, images_for_ids=_images_for_ids)
    return run_dir, cfg, summary, md


def test_report_builds_and_every_figure_is_a_readable_png(run):
    run_dir, _, _, md = run
    text = md.read_text()
    figures = _figures(text)
    for kind in ("accuracy_vs_depth.png", "cost.png", "confusion_classical.png",
                 "confusion_finetune.png", "confusion_scratch.png", "per_class_f1.png",
                 "gallery_classical_mistakes.png", "gallery_finetune_uncertain.png",
                 png_name("embeddings", "block2", "test"), png_name("pixels", "pixels", "test")):
        assert kind in figures
    for f in figures:
        _check_png(md.parent / f)
    html = (md.parent / "report.html").read_text()
    assert "<table>" in html and '<img src="accuracy_vs_depth.png"' in html


def test_table_numbers_equal_the_results_rows(run):
    run_dir, _, _, md = run
    rows = {r["run_id"]: r for r in results.read(run_dir / "results.csv")
            if r["experiment"] != "ex-older"}
    assert "1 older row(s) in results.csv belong to other experiments" in md.read_text()
    lines = [ln for ln in md.read_text().splitlines() if ln.startswith("| ") and ln.endswith(" |")]
    header = next(ln for ln in lines if "95 % CI" in ln)
    cols = [c.strip() for c in header.strip("|").split("|")]
    table = [dict(zip(cols, (c.strip() for c in ln.strip("|").split("|"))))
             for ln in lines[lines.index(header) + 1:] if ln.split("|")[1].strip().isdigit()]
    assert sorted(t["run_id"] for t in table) == sorted(rows)
    vals = [float(t["val acc"]) for t in table]
    assert vals == sorted(vals, reverse=True)        # ranked by the selection score
    for t in table:
        r = rows[t["run_id"]]
        assert t["method"] == r["method"]
        assert float(t["val acc"]) == pytest.approx(r["val_accuracy"], abs=5e-5)
        assert int(t["train rows"]) == r["n_train"] and t["rule"].startswith("[")
        assert float(t["test accuracy"]) == pytest.approx(r["accuracy"], abs=5e-5)
        low, high = (float(v) for v in t["95 % CI"].strip("[]").split(","))
        assert (low, high) == pytest.approx((r["acc_ci_low"], r["acc_ci_high"]), abs=5e-5)
        assert float(t["macro-F1"]) == pytest.approx(r["macro_f1"], abs=5e-5)
        assert float(t["fit s"]) == pytest.approx(r["fit_seconds"], abs=5e-3)
        if r["trainable_params"] is not None:
            assert int(t["trainable params"].replace(",", "")) == r["trainable_params"]
        assert t["n"] == str(r["frozen_blocks"])


def _paired(run_dir, ra, rb):
    a, b = (np.load(run_dir / r["predictions"]) for r in (ra, rb))
    order = np.argsort(b["ids"])[np.searchsorted(b["ids"], a["ids"], sorter=np.argsort(b["ids"]))]
    return mcnemar(a["y_true"], a["y_pred"], b["y_pred"][order])


def test_every_best_is_chosen_on_validation_and_tests_are_holm_corrected(run):
    """The winners named are the validation-chosen ones (block2 logreg, k=1), although
    block1 logreg and k=3 are better on test; the tested pairs are fixed (frozen vs fine-tuned,
    frozen vs pixels, each depth vs scratch) and their p-values Holm-adjusted."""
    from statsmodels.stats.multitest import multipletests
    run_dir, _, _, md = run
    rows = [r for r in results.read(run_dir / "results.csv") if r["experiment"] != "ex-older"]
    by = {(r["method"], r["cut"]): r for r in rows}
    assert by[("frozen+logreg", "block1")]["accuracy"] > by[("frozen+logreg", "block2")]["accuracy"]
    assert by[("finetune k=3", "")]["accuracy"] > by[("finetune k=1", "")]["accuracy"]
    text = md.read_text()
    summary = text.split("## What it says")[1].split("\n## ")[0]
    assert "validation-chosen frozen-feature model is **logreg on frozen block2" in summary
    assert "validation-chosen fine-tuning depth is **fine-tuned with the top 1 block(s)" in summary
    assert "xgboost" not in text.split("## Results")[1].split("\n## ")[0]   # other experiment
    section = text.split("## Paired significance (McNemar, Holm-corrected)")[1].split("\n## ")[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    fz, ft, px, sc = (by[("frozen+logreg", "block2")], by[("finetune k=1", "")],
                      by[("frozen+logreg", "pixels")], by[("scratch", "")])
    pairs = [(fz, ft), (fz, px)] + [(by[(f"finetune k={k}", "")], sc) for k in (0, 1, 2, 3)]
    assert len(lines) == len(pairs)
    expected = [_paired(run_dir, a, b) for a, b in pairs]
    holm = multipletests([e["p_value"] for e in expected], method="holm")[1]
    for ln, e, p_adj in zip(lines, expected, holm):
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert int(cells[3]) == e["b"] and int(cells[4]) == e["c"]
        assert float(cells[7]) == pytest.approx(e["p_value"], rel=1e-2)
        assert float(cells[8]) == pytest.approx(p_adj, rel=1e-2)
    assert "McNemar p =" in summary and "Holm-adjusted" in summary


def test_galleries_show_the_most_confident_mistakes(run):
    run_dir, cfg, _, md = run
    # The first gallery is the validation-chosen frozen model's most confident mistakes: the
    # k wrong predictions with the highest probability, most confident first.
    best = next(r for r in results.read(run_dir / "results.csv")
                if r["method"] == "frozen+logreg" and r["cut"] == "block2")
    p = np.load(run_dir / best["predictions"])
    conf = p["proba"][np.arange(len(p["y_pred"])), p["y_pred"]]
    wrong = np.flatnonzero(p["y_pred"] != p["y_true"])
    k = cfg["report"]["gallery_size"]
    expected = p["ids"][wrong[np.argsort(-conf[wrong], kind="stable")][:k]]
    assert REQUESTED[0] == [str(i) for i in expected] and len(expected) == k
    # ... and the second its most uncertain predictions (smallest top-2 margin)
    top = np.sort(p["proba"], axis=1)
    margin = top[:, -1] - top[:, -2]
    assert REQUESTED[1] == [str(i) for i in p["ids"][np.argsort(margin, kind="stable")[:k]]]
    text = md.read_text()
    assert "most confident mistakes" in text and "most uncertain predictions" in text
    # The fine-tuned best model saved shuffled predictions: its gallery must still exist.
    _check_png(md.parent / "gallery_finetune_mistakes.png")


def test_umap_round_trips_through_the_store_and_rerun_is_a_no_op(run):
    run_dir, cfg, summary, _ = run
    entries = summary["entries"]
    assert {(e["store"], e["cut"]) for e in entries} == (
        {("embeddings", c) for c in CUTS} | {("pixels", "pixels")})
    assert all(e["computed"] and e["n_points"] == e["n_total"] == N_TEST for e in entries)
    before = {}
    for e in entries:
        coords, params = store.read_umap(run_dir / f"{e['store']}.h5", e["cut"], "test")
        assert coords.shape == (N_TEST, 2) and np.isfinite(coords).all()
        assert params == e["params"] and params["random_state"] == 0 and params["n_jobs"] == 1
        assert "single-threaded" in params["threading"]
        mtime = (run_dir / "report" / e["png"]).stat().st_mtime_ns
        before[(e["store"], e["cut"])] = (coords, mtime)
    # The marked mistakes are those of the best classical model at that cut.
    rows = results.read(run_dir / "results.csv")
    e = next(e for e in entries if e["cut"] == "block1")
    best = max((r for r in rows if r["stage"] == "classical" and r["cut"] == "block1"
                and r["experiment"] != "ex-older"),
               key=lambda r: (r["val_accuracy"], -r["fit_seconds"]))  # chosen on validation
    p = np.load(run_dir / best["predictions"])
    assert e["mistakes_from"] == best["run_id"]
    assert e["mistakes_marked"] == int((p["y_true"] != p["y_pred"]).sum())
    assert "all 48 points" in e["title"]

    again = run_umap(run_dir, cfg, log=lambda *_: None)
    assert not any(e["computed"] for e in again["entries"])
    for e in again["entries"]:
        coords, _ = store.read_umap(run_dir / f"{e['store']}.h5", e["cut"], "test")
        old_coords, old_mtime = before[(e["store"], e["cut"])]
        np.testing.assert_array_equal(coords, old_coords)
        assert (run_dir / "report" / e["png"]).stat().st_mtime_ns == old_mtime
    assert json.loads((run_dir / "umap" / "done.json").read_text())["entries"][0]["params"]


def test_subsampled_umap_says_so(run, tmp_path):
    run_dir, cfg, _, _ = run
    copy = tmp_path / "sub"
    shutil.copytree(run_dir, copy)
    with pytest.raises(ValueError, match="Available splits"):
        run_umap(copy, config.merge(cfg, {"umap": {"splits": ["tset"]}}), log=lambda *_: None)
    cfg = config.merge(cfg, {"umap": {"max_points": 20, "splits": ["val", "test"]}})
    summary = run_umap(copy, cfg, log=lambda *_: None)
    assert all(e["skipped"] for e in summary["entries"] if e["split"] == "val")  # empty split
    e = next(e for e in summary["entries"] if e["cut"] == "block3" and e["split"] == "test")
    assert e["computed"] and e["n_points"] < e["n_total"] == N_TEST
    assert "SUBSAMPLE" in e["title"] and f"of {N_TEST} points" in e["title"]
    coords, _ = store.read_umap(copy / "embeddings.h5", "block3", "test")
    assert np.isfinite(coords).all(axis=1).sum() == e["n_points"]
    md = build_report(copy, cfg, images_for_ids=_images_for_ids).read_text()
    assert f"subsample of {e['n_points']} of {N_TEST} points" in md


def test_stratified_subsample_keeps_every_class_in_proportion():
    y = np.repeat([0, 1, 2], [600, 300, 100])
    idx = stratified_subsample(y, 100, seed=3)
    counts = np.bincount(y[idx])
    assert list(counts) == [60, 30, 10]
    np.testing.assert_array_equal(idx, stratified_subsample(y, 100, seed=3))
    assert len(stratified_subsample(y, 0, seed=3)) == len(y)


def test_missing_pieces_are_reported_not_fatal(tmp_path):
    run_dir = tmp_path / "partial"
    cfg = _make_run(run_dir, finetune=False)
    md = build_report(run_dir, cfg, log=lambda *_: None).read_text()  # dataset can't be loaded
    assert "No fine-tuning results yet" in md
    assert "No UMAP pictures yet" in md
    assert "No galleries" in md
    for f in _figures(md):
        _check_png(run_dir / "report" / f)


def test_cli_without_results_says_to_classify_first(tmp_path, capsys):
    run_dir = tmp_path / "empty"
    run_dir.mkdir()
    assert report_main(["build", "--run-dir", str(run_dir)]) == 2
    assert "make classify" in capsys.readouterr().err
    assert report_main(["umap", "--run-dir", str(run_dir)]) == 2
    assert "make extract" in capsys.readouterr().err


def test_cli_builds_the_report_and_exports_the_projector(run, tmp_path, capsys):
    run_dir, _, _, _ = run
    copy = tmp_path / "cli"
    shutil.copytree(run_dir, copy)
    (copy / "report" / "report.md").unlink()
    args = ["--config", str(copy / "config.toml"), "--run-dir", str(copy)]
    assert report_main(["build", *args]) == 0
    md = (copy / "report" / "report.md").read_text()
    assert "## Paired significance (McNemar, Holm-corrected)" in md and "No galleries" in md
    assert report_main(["projector", *args, "--cut", "block2"]) == 0
    vec = np.loadtxt(copy / "projector" / "embeddings_block2_test_vectors.tsv", delimiter="\t")
    X, y, ids = store.read(copy / "embeddings.h5", "block2", "test")
    np.testing.assert_allclose(vec, X, rtol=1e-5)
    meta = (copy / "projector" / "embeddings_block2_test_metadata.tsv").read_text().splitlines()
    assert meta[0] == "id\tlabel\tclass" and meta[1] == f"{ids[0]}\t{y[0]}\t{CLASSES[y[0]]}"
    assert report_main(["projector", *args, "--cut", "block9"]) == 2
    assert "Available" in capsys.readouterr().err


def test_default_gallery_images_come_from_the_configured_dataset():
    from cutpoint import splits
    cfg = config.load(None, ["dataset.name=digits"])
    target = splits.prepare(cfg)["target"]
    images_for_ids = dataset_images(cfg)
    pick = [7, 0, 31]
    got = images_for_ids(target.ids[pick])
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, target.images(np.array(pick)))
    with pytest.raises(KeyError):
        images_for_ids(["not-an-id"])
