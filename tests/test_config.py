import subprocess
import sys

import pytest

from cutpoint import config
from cutpoint.results import COLUMNS, append, read


def test_defaults_and_file_merge(tmp_path):
    f = tmp_path / "x.toml"
    f.write_text('[backbone]\nname = "resnet50"\n[extract]\ncuts = ["conv4"]\n')
    cfg = config.load(f)
    assert cfg["backbone"]["name"] == "resnet50"
    assert cfg["extract"]["cuts"] == ["conv4"]
    assert cfg["extract"]["pooling"] == config.DEFAULTS["extract"]["pooling"]
    assert cfg["experiment"]["name"] == "x"  # file stem when no name is given


def test_unknown_key_lists_valid_ones_and_close_match(tmp_path):
    f = tmp_path / "x.toml"
    f.write_text('[backbone]\nnmae = "resnet50"\n')
    with pytest.raises(config.ConfigError) as e:
        config.load(f)
    msg = str(e.value)
    assert "backbone.nmae" in msg and "weights" in msg and "Did you mean 'name'" in msg


def test_unknown_section_and_wrong_type(tmp_path):
    f = tmp_path / "x.toml"
    f.write_text('[extrct]\ncuts = []\n')
    with pytest.raises(config.ConfigError, match="Did you mean 'extract'"):
        config.load(f)
    with pytest.raises(config.ConfigError, match="must be a int"):
        config.load(None, ["experiment.seed=abc"])


def test_overrides_parse_toml_lists_and_bare_words():
    cfg = config.load(None, ["extract.cuts=block1,block3", "classical.classifiers=logreg",
                             "dataset.target_classes=5,6", "experiment.seed=3"])
    assert cfg["extract"]["cuts"] == ["block1", "block3"]
    assert cfg["classical"]["classifiers"] == ["logreg"]
    assert cfg["dataset"]["target_classes"] == [5, 6]
    assert cfg["experiment"]["seed"] == 3
    with pytest.raises(config.ConfigError, match="section.key=value"):
        config.load(None, ["seed=3"])


def test_resolved_config_round_trips_and_is_written_only_on_change(tmp_path):
    cfg = config.load("configs/default.toml")
    out = tmp_path / "config.toml"
    assert config.write_if_changed(out, config.to_toml(cfg))
    assert config.load(out) == cfg
    mtime = out.stat().st_mtime_ns
    assert not config.write_if_changed(out, config.to_toml(cfg))
    assert out.stat().st_mtime_ns == mtime


def test_shipped_configs_are_valid():
    for name in ("configs/default.toml", "configs/cifar10_resnet50.toml",
                 "configs/fmnist_pixels.toml"):
        cfg = config.load(name)
        assert config.config_hash(cfg)


def test_resolve_cli_reports_bad_override(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cutpoint", "resolve", "--set", "backbone.nme=x",
                        "--out", str(tmp_path / "c.toml")], capture_output=True, text=True)
    assert r.returncode != 0 and "Unknown setting 'backbone.nme'" in r.stderr


def test_results_append_is_idempotent_and_atomic(tmp_path):
    path = tmp_path / "results.csv"
    row = {"run_id": "abc", "stage": "classical", "accuracy": 0.9, "n_test": 10}
    assert append(path, row)
    assert not append(path, dict(row, accuracy=0.1))
    rows = read(path)
    assert len(rows) == 1 and rows[0]["accuracy"] == 0.9 and rows[0]["n_test"] == 10
    assert list(rows[0]) == COLUMNS
    with pytest.raises(ValueError, match="Unknown results columns"):
        append(path, {"run_id": "x", "acuracy": 1})
