"""The benchmark harness: FLOP counting, target verdicts, and the outputs of a --quick run.

Speed is measured by `make bench`, never asserted here: the quick run only has to produce
well-formed JSON/Markdown with positive, sane numbers.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cutpoint import config as cconfig
from cutpoint import results

ROOT = Path(__file__).resolve().parent.parent


def test_flops_count_matches_hand_count():
    import keras
    from benchmarks import flops

    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)                # 2*3*3*1*4 * 8*8
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)            # 2*3*3*4 * 8*8
    x = keras.layers.Conv2D(6, 1, strides=2)(x)                       # 2*1*1*4*6 * 4*4
    x = keras.layers.BatchNormalization()(x)                          # not counted
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3)(x)                                    # 2*6*3
    got = flops.count(keras.Model(inp, out))
    assert got["by_type"] == {"Conv2D": 4608 + 768, "DepthwiseConv2D": 4608, "Dense": 36}
    assert got["total"] == 4608 + 768 + 4608 + 36


def test_flops_of_a_cut_model_count_only_the_layers_it_runs():
    import keras
    from benchmarks import flops

    inp = keras.Input((8, 8, 2))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(a)
    full = keras.Model(inp, b)
    cut = keras.Model(full.input, full.get_layer("a").output)
    assert flops.count(cut)["total"] == 2 * 9 * 2 * 4 * 64
    assert flops.count(full)["total"] == 2 * 9 * 2 * 4 * 64 + 2 * 9 * 4 * 4 * 64


def test_target_verdicts():
    from benchmarks.common import target

    assert target("s", "x", 0.9, 0.85)["verdict"] == "met"
    miss = target("s", "x", 0.425, 0.85)
    assert miss["verdict"] == "missed by 50 %" and not miss["met"]
    assert target("s", "mem", 1.05, 1.1, higher_is_better=False)["met"]
    assert target("s", "mem", 1.32, 1.1, higher_is_better=False)["verdict"] == "missed by 20 %"
    assert target("s", "x", None, 1.0)["verdict"] == "not measured"


def test_only_rejects_unknown_sections_and_adds_the_peak_extraction_needs():
    from benchmarks.__main__ import parse_only

    assert parse_only("extraction") == ["peak", "extraction"]
    assert parse_only("resize") == ["peak", "resize"]
    assert parse_only("hdf5,memory") == ["memory", "hdf5"]
    with pytest.raises(ValueError, match="Did you mean 'memory'"):
        parse_only("memroy")


@pytest.mark.slow
def test_quick_run_writes_well_formed_results(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    res = json.loads((tmp_path / "results.json").read_text())
    errors = {n: s.get("error") for n, s in res["sections"].items() if s["status"] == "error"}
    assert out.returncode == 0 and not errors, (errors, out.stderr[-3000:])
    assert res["mode"] == "quick"
    assert list(res["sections"]) == ["peak", "extraction", "resize", "depthwise", "sweep",
                                     "memory", "hdf5", "classical", "classical_wide", "scale",
                                     "e2e"]
    assert res["machine"]["logical_cpus"] >= 1 and res["machine"]["versions"]["tensorflow"]
    sec = res["sections"]

    peak = sec["peak"]["summary"]["peak_gflops"]
    assert peak > 0 and all(r["gflops"] > 0 for r in sec["peak"]["rows"])

    ext = sec["extraction"]["rows"]
    assert {r["backbone"] for r in ext} == {"small_vgg", "mobilenet_v2", "resnet50"}
    for r in ext:
        assert r["images_per_second"] > 0 and r["mflops_per_image"] > 0
        assert r["fraction_of_peak"] == pytest.approx(r["gflops"] / peak)
        assert r["images_timed"] >= r["batch"]
    # Deeper, wider networks cost more per image: a sanity check of the FLOP count.
    per_image = {r["backbone"]: r["mflops_per_image"] for r in ext if r["input"] == "32x32x3"}
    assert per_image["resnet50"] > per_image["mobilenet_v2"]

    rz = sec["resize"]["rows"]
    assert [r["path"] for r in rz] == ["resize", "pre-resized"]
    assert rz[0]["stored"] != rz[1]["stored"] and rz[0]["input"] == rz[1]["input"]
    assert all(r["images_per_second"] > 0 for r in rz) and rz[1]["ratio_to_pre_resized"] == 1
    row = [t for t in res["targets"] if t["section"] == "resize"]
    assert len(row) == 1 and row[0]["what"].startswith("extraction with resize vs pre-resized")
    assert row[0]["value"] == pytest.approx(rz[0]["ratio_to_pre_resized"])

    dw = sec["depthwise"]["rows"]
    assert [r["variant"] for r in dw][0] == "TF default" and len(dw) == 2
    assert dw[0]["embedding_rel_error_vs_default"] == 0 and dw[1]["onednn"] == "on"
    assert all(r["images_per_second"] > 0 for r in dw)

    sweep = sec["sweep"]["rows"]
    assert [r["k"] for r in sweep][0] == 1 and sweep[-1]["k"] > 1
    assert all(r["naive_seconds"] > 0 and r["one_pass_seconds"] > 0 and r["speedup"] > 0
               for r in sweep)

    mem = sec["memory"]["rows"]
    assert len(mem) == 2 and mem[1]["images"] == 6 * mem[0]["images"]
    assert all(r["peak_rss_mb"] > r["dataset_mb"] > 0 for r in mem)

    h5 = sec["hdf5"]["rows"]
    assert {(r["dtype"], r["compression"]) for r in h5} == {
        (d, c) for d in ("float32", "float16") for c in ("none", "lzf", "gzip")}
    assert all(r["write_mb_per_s"] > 0 and r["file_mb"] > 0 for r in h5)
    by = {(r["dtype"], r["compression"]): r["file_mb"] for r in h5}
    assert by[("float16", "none")] < by[("float32", "none")]

    cls = sec["classical"]["rows"]
    assert cls and all(r["fit_select_seconds"] > 0 and 0 <= r["accuracy"] <= 1 for r in cls)

    scale = sec["scale"]["rows"]
    assert {(r["classifier"], r["engine"]) for r in scale} == {("logreg", "sgd-stream"),
                                                              ("xgboost", "xgb-collective")}
    assert sorted({r["rows"] for r in scale}) == res["sizes"]["scale"]["rows"]
    assert all(r["max_worker_peak_mb"] > 0 and r["seconds"] > 0 for r in scale)
    assert {r["workers"] for r in scale} == {1, 2}
    assert sum(t["section"] == "scale" for t in res["targets"]) == 4
    wide = sec["classical_wide"]["rows"]     # the six at full (quick: tiny) size, then before/after
    full = [r for r in wide if r["rows"] == res["sizes"]["classical_wide"]["n_train"]]
    assert [r["classifier"] for r in full] == cconfig.DEFAULTS["classical"]["classifiers"]
    assert {(r["classifier"], r["settings"]) for r in wide if r not in full} == {
        (c, s) for c in res["sizes"]["classical_wide"]["changed"] for s in ("before", "after")}
    assert all(0 <= r["val_accuracy"] <= 1 and 0 <= r["test_accuracy"] <= 1 for r in wide)
    [t] = [t for t in res["targets"] if t["section"] == "classical_wide"]
    assert t["value"] == pytest.approx(sum(r["fit_select_seconds"] for r in full))

    # Without --e2e the section reports what runs/default recorded, or says how to measure it.
    table = ROOT / "runs" / "default" / "results.csv"
    recorded = table.exists() and any(r["stage"] == "classical" for r in results.read(table))
    if recorded:
        assert sec["e2e"]["status"] != "skipped" and sec["e2e"]["rows"][-1]["runs"] > 0
    else:
        assert sec["e2e"]["status"] == "skipped" and not sec["e2e"]["rows"]
        assert "--only e2e --e2e" in sec["e2e"]["notes"][0]
    assert res["targets"] and all(re.fullmatch(r"met|missed by \d+ %|not measured", t["verdict"])
                                  for t in res["targets"])

    md = (tmp_path / "results.md").read_text()
    cpu = res["machine"]["cpu_model"]
    assert cpu in md and res["machine"]["versions"]["tensorflow"] in md
    for heading in ("## Machine", "## Targets", "## Extraction throughput", "## Peak memory"):
        assert heading in md
    assert md.count("| met |") + md.count("| missed by") >= len(res["targets"]) - \
        sum(t["verdict"] == "not measured" for t in res["targets"])
