"""Experiment configuration: one flat TOML file per experiment, every default defined here.

A config file only states what differs from `DEFAULTS`. Unknown sections or keys are refused
with the valid ones listed (a typo must not silently fall back to a default). Command lines and
the Makefile override single values with ``--set section.key=value`` (value parsed as TOML,
falling back to a bare string), e.g. ``--set backbone.name=resnet50 --set extract.cuts=[\"conv4\"]``.
The resolved config is saved beside every result.
"""
from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

from cutpoint.provenance import hash_obj
from cutpoint.registry import did_you_mean

DEFAULTS: dict = {
    "experiment": {
        "name": "",            # "" = the config file's stem (runs/<name>/)
        "seed": 0,
    },
    "dataset": {
        "name": "fashion_mnist",  # fashion_mnist | mnist | cifar10 | cifar100 | digits | folder | npz
        "path": "",               # folder / .npz / directory with local archives; "" = default source
        "source_classes": [0, 1, 2, 3, 4],  # half A: trains the backbone ([] = all classes)
        "target_classes": [5, 6, 7, 8, 9],  # half B: embedded, classified, fine-tuned ([] = all)
        "val_fraction": 0.1,      # validation carved from train (stratified, seeded)
        "labels_per_class": 0,    # label budget on the target train split (0 = all)
        "limit": 0,               # keep at most this many rows per split, stratified (0 = all)
        "channels": "auto",       # auto | 1 | 3: the images' channels as the backbone gets them.
                                  # auto: gray is repeated to RGB for a 3-channel backbone, RGB
                                  # into a 1-channel one is refused (lossy); 1: RGB → gray by
                                  # luminance (ITU-R 601: .299 R + .587 G + .114 B); 3: gray → RGB
                                  # by repetition. Recorded in the store's provenance.
    },
    "backbone": {
        "name": "small_vgg",      # a registry name: `python -m extract --list`
        "weights": "self",        # self | imagenet | none | path to .weights.h5 | path to .keras/.h5
        "input_size": 0,          # 0 = the backbone's native size (own CNNs: the data's size)
        "resize_method": "bilinear",  # bilinear | nearest | bicubic | area | lanczos3: to the
                                      # input size, by tf.image.resize on whole batches in the
                                      # graph (mixed-size folders: Pillow's same filter at decode)
    },
    "train": {                    # the self-trained backbone (weights = "self")
        "epochs": 8,
        "batch_size": 128,
        "learning_rate": 0.001,
        "patience": 2,
        "augment": ["shift"],     # any of: shift, flip (horizontal), zoom
    },
    "extract": {
        "cuts": [],               # aliases or exact layer names; [] = every registry cut point
        "pooling": "avg",         # avg | max | avgmax | flatten
        "batch_size": 256,
        "dtype": "float32",       # float32 | float16: the STORED matrices (not the compute)
        "precision": "float32",   # float32 | bfloat16 | mixed_float16: the compute of extraction
                                  # AND fine-tuning, not of the backbone's self-training (Keras
                                  # dtype policy; float32 weights, the softmax head stays
                                  # float32). Reduced precision is for GPUs
                                  # (mixed_float16) or bfloat16 hardware; it changes the numbers,
                                  # so it is part of the extraction key and the run identities.
        "compression": "none",    # none | lzf | gzip
        "chunk_rows": 4096,
        "pixels": True,           # also write the raw-pixel pseudo-backbone store
        "pixels_size": 64,        # its images' longest side at most this (area-resized, aspect
                                  # kept; mixed sizes → this × this); 0 = native size, no cap
    },
    "classical": {
        "classifiers": ["logreg", "linear_svm", "rbf_svm", "random_forest", "xgboost", "knn"],
        "cuts": [],               # [] = every cut point in the store (plus pixels)
        "n_jobs": 2,
        "rbf_max_train": 10000,   # RBF SVC is quadratic: fit on a stratified subset above this
        "max_in_memory_mb": 4096, # a cut above this (float32, all splits) is streamed: logreg
                                  # by SGD, xgboost from external memory; others refused
                                  # (classical/distributed.py). 0 = never stream
        "bootstrap": 1000,
    },
    "finetune": {
        "depths": [],             # [] = every depth 0 … all, then scratch; or e.g. ["0", "2", "all", "scratch"]
        # k = 0 is the linear probe (cutpoint.probe: logistic regression, C chosen on val, folded
        # into the Keras head); every k >= 1 starts from that head and fine-tunes the top k
        # blocks + head with Adam. The learning rate is chosen on validation: each candidate
        # trains `lr_search_epochs` epoch(s) from the same start, the best val accuracy goes on
        # to at most `epochs` epochs in all, and the epoch with the lowest val loss is restored.
        "epochs": 8,              # most epochs of the chosen run (its search epochs included)
        "lr_search_epochs": 1,    # epochs each learning-rate candidate gets before the choice
        "learning_rates": [0.00003, 0.0001, 0.0003],  # k >= 1 candidates ([x] = no choice)
        "scratch_learning_rates": [0.0003, 0.001, 0.003],  # from-scratch candidates
        "batch_size": 128,
        "patience": 2,            # early stopping on val loss, epochs without improvement
        "augment": ["shift"],
    },
    "curve": {                    # label-efficiency curve (`make curve`, BRIEF §13)
        # labels per class drawn from the target train split; the default fits `make curve` in
        # about 20 min on a 2-core CPU (the full budget is `make classify` / `make finetune`)
        "budgets": [1, 5, 20, 100, 200],
        "seeds": [0, 1, 2],       # one nested stratified subset per seed
        "classifiers": ["logreg", "linear_svm", "rbf_svm", "random_forest", "xgboost", "knn"],
        "cuts": [],               # [] = every cut point in the store, plus pixels
        "holdout_min": 20,        # >= this many labels per class: hold out `holdout_fraction`
        "holdout_fraction": 0.2,  #   of the subset for selection; fewer: cross-validation
        "cv_folds": 5,            # folds (at most the labels per class; 1 label: no selection)
        # Fine-tuning cells (same depth vocabulary as finetune.depths; [] = finetune.depths).
        # Below holdout_min there is nothing to select on: k >= 1 and scratch then train with
        # declared settings (the middle learning-rate candidate, finetune.epochs epochs).
        "depths": ["0", "all", "scratch"],
        "min_steps_per_epoch": 25,  # a few-label epoch repeats its rows to this many batches
        # Fine-tuning batch in the curve's cells (at most the subset's rows): few-label training
        # takes small batches; the full-budget stage keeps finetune.batch_size.
        "batch_size": 32,
    },
    "umap": {
        "n_neighbors": 15,
        "min_dist": 0.1,
        "random_state": 0,        # an int = reproducible but single-threaded; -1 = parallel
        "max_points": 0,          # 0 = plot every point
        "fit_points": 50000,      # above this many points, UMAP is fitted on a stratified
                                  # seeded sample of this size and the rest are placed with
                                  # UMAP.transform in chunks (0 = fit on every point)
        "pca_dims": 50,           # with a sampled fit, wider embeddings go through PCA to this
        "transform_chunk": 20000, # rows per UMAP.transform call (memory stays per chunk)
        "splits": ["test"],
    },
    "report": {
        "gallery_size": 16,
    },
}


class ConfigError(ValueError):
    pass


CHOICES = {("dataset", "channels"): ("auto", 1, 3),   # settings with a fixed set of values
           ("extract", "precision"): ("float32", "bfloat16", "mixed_float16"),
           ("backbone", "resize_method"): ("bilinear", "nearest", "bicubic", "area", "lanczos3")}


def _check_type(section: str, key: str, value, default):
    if (section, key) in CHOICES:
        choices = CHOICES[(section, key)]
        if isinstance(value, bool) or value not in choices:
            raise ConfigError(f"The '{section}.{key}' setting must be one of "
                              f"{', '.join(json.dumps(c) for c in choices)}. Got {value!r} "
                              f"instead.")
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, list):
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(
            f"The '{section}.{key}' setting must be a {type(default).__name__} "
            f"(like {json.dumps(default)}). Got {value!r} ({type(value).__name__}) instead.")


def merge(base: dict, update: dict, origin: str = "config") -> dict:
    """Deep-merge `update` into a copy of `base`, refusing unknown sections/keys."""
    out = copy.deepcopy(base)
    for section, values in update.items():
        if section not in DEFAULTS:
            raise ConfigError(f"Unknown section [{section}] in {origin}. Valid sections: "
                              f"{', '.join(DEFAULTS)}.{did_you_mean(section, DEFAULTS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] in {origin} must be a table of settings. Got {values!r}.")
        for key, value in values.items():
            if key not in DEFAULTS[section]:
                raise ConfigError(
                    f"Unknown setting '{section}.{key}' in {origin}. Valid settings of "
                    f"[{section}]: {', '.join(DEFAULTS[section])}."
                    f"{did_you_mean(key, DEFAULTS[section])}")
            _check_type(section, key, value, DEFAULTS[section][key])
            out[section][key] = value
    return out


def parse_override(text: str) -> dict:
    """'section.key=value' → {section: {key: value}}; value parsed as TOML, else a string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"An override must look like 'section.key=value' "
                          f"(e.g. backbone.name=resnet50). Got {text!r}.")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if isinstance(DEFAULTS.get(section, {}).get(key), list) and not isinstance(value, list):
        value = [v.strip() for v in str(raw).replace(",", " ").split() if v.strip()]
        value = [int(v) if v.lstrip("-").isdigit() and section in ("dataset", "curve") else v
                 for v in value]
    return {section: {key: value}}


def load(path=None, overrides=()) -> dict:
    """Resolve a config: DEFAULTS ← TOML file ← overrides. Returns a plain dict."""
    cfg = copy.deepcopy(DEFAULTS)
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Config file {str(path)!r} not found. Pass an existing TOML file "
                              f"(see configs/), or omit it to use the defaults.")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"Config file {str(path)!r} is not valid TOML: {e}.") from None
        cfg = merge(cfg, data, origin=str(path))
        if not cfg["experiment"]["name"]:
            cfg["experiment"]["name"] = path.stem
    for text in overrides:
        cfg = merge(cfg, parse_override(text), origin=f"override {text!r}")
    if not cfg["experiment"]["name"]:
        cfg["experiment"]["name"] = "default"
    return cfg


# The sections each Makefile stage reads: `python -m cutpoint resolve --stamps DIR` writes one
# file per stage with only these, rewritten only when they change, so a config edit re-runs
# exactly the stages that read what changed (an [umap] edit never re-runs classify).
_DATA = ("experiment", "dataset", "backbone", "train", "extract")
STAGE_SECTIONS = {
    "extract": _DATA,
    "classify": _DATA + ("classical",),
    "finetune": _DATA + ("classical", "finetune"),      # classical: bootstrap, n_jobs
    "curve": _DATA + ("classical", "finetune", "curve"),
    "umap": _DATA + ("umap",),
    "report": tuple(DEFAULTS),
}


def stage_view(cfg: dict, stage: str) -> dict:
    """The part of a resolved config that stage `stage` reads (`STAGE_SECTIONS`)."""
    return {s: cfg[s] for s in STAGE_SECTIONS[stage]}


def config_hash(cfg: dict, sections=None) -> str:
    """Hash of the given sections (all by default): the key that decides whether work is redone."""
    part = {s: cfg[s] for s in (sections or cfg)}
    return hash_obj(part)


def to_toml(cfg: dict) -> str:
    """Serialise a resolved config (flat sections, scalars and lists only)."""
    lines = []
    for section, values in cfg.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines)


def write_if_changed(path, text: str) -> bool:
    """Write only when the content differs, so Make's timestamps mean 'the config changed'."""
    path = Path(path)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True
