"""Workload sizes of every section, for the full run and for `--quick` (a smoke test, seconds).

The full sizes are chosen so `make bench` finishes in about 25 minutes on 2 cores (plus
classical_wide, which runs the six classifiers at full size: about 10 more, by its goal): extraction is
timed for a few seconds per setting (not a fixed image count), and each classifier x width gets a
time budget (the classical section grows the training rows from a pilot only while the predicted
time fits; see classifiers.py).
"""
from __future__ import annotations

import copy

FULL = {
    "peak": {"sizes": [2048, 3072, 4096], "repeats": 5},
    "extraction": {
        "configs": [
            {"backbone": "small_vgg", "px": 28, "channels": 1, "batches": [32, 128, 512]},
            {"backbone": "small_vgg", "px": 32, "channels": 3, "batches": [32, 128, 512]},
            {"backbone": "mobilenet_v2", "px": 96, "channels": 3, "batches": [32, 128, 512]},
            # ~20 img/s at 224 px: 2 batches of 64 are already ~6 s per repeat.
            {"backbone": "resnet50", "px": 224, "channels": 3, "batches": [16, 64],
             "min_images": 128, "min_seconds": 4.0, "repeats": 2},
        ],
        "min_images": 1024, "min_seconds": 2.0, "repeats": 3, "warmup_calls": 2,
    },
    # Each path of each pair timed over the whole set, 3 times, alternating (resnet50: ~20 img/s).
    "resize": {
        "configs": [
            {"backbone": "small_vgg", "native": 28, "px": 56, "channels": 1, "n": 4096,
             "batch": 256},
            {"backbone": "resnet50", "native": 32, "px": 224, "channels": 3, "n": 192,
             "batch": 64},
        ],
        "repeats": 3,
    },
    "depthwise": {"px": 96, "batch": 256, "min_images": 1024, "min_seconds": 3.0, "repeats": 2,
                  "rounds": 2},
    "sweep": {
        "configs": [
            {"backbone": "small_vgg", "px": 28, "channels": 1, "n": 4096},
            {"backbone": "mobilenet_v2", "px": 96, "channels": 3, "n": 1024},
        ],
        "repeats": 2,
    },
    "memory": {"backbone": "small_vgg", "px": 28, "channels": 1, "n": 10000, "factor": 6},
    "hdf5": {"backbone": "small_vgg", "px": 28, "channels": 1, "n_images": 4096,
             "target_mb": 160, "chunk_rows": 4096},
    # 6 classifiers x 3 widths share ~11 minutes; a cell that is fast leaves time to the others.
    "classical": {"dims": [128, 1280, 2048], "n_train": 30000, "n_test": 5000, "n_classes": 10,
                  "pilot_rows": 500, "cell_budget_s": 60.0, "section_budget_s": 660.0,
                  "min_cell_s": 15.0, "min_first_step_s": 45.0, "n_jobs": 2},
    # 300k x 512 float32 = 586 MB per store; logreg and XGBoost stream it (benchmarks/scale.py).
    "scale": {"rows": [100000, 300000], "width": 512, "n_classes": 10, "chunk_rows": 4096},
    # Issue 15: the six at full size (today's settings), and before/after on fewer rows.
    "classical_wide": {"n_train": 30000, "n_test": 5000, "dim": 2048, "n_jobs": 2,
                       "timeout_s": 3600.0, "compare_rows": 5000, "compare_timeout_s": 900.0,
                       "changed": ["linear_svm", "rbf_svm", "random_forest", "xgboost"]},
    "e2e": {"timeout_s": 3600},
}

QUICK = {
    "peak": {"sizes": [256, 512], "repeats": 2},
    "extraction": {
        "configs": [
            {"backbone": "small_vgg", "px": 28, "channels": 1, "batches": [8, 32]},
            {"backbone": "small_vgg", "px": 32, "channels": 3, "batches": [8]},
            {"backbone": "mobilenet_v2", "px": 32, "channels": 3, "batches": [8]},
            {"backbone": "resnet50", "px": 32, "channels": 3, "batches": [4]},
        ],
        "min_images": 16, "min_seconds": 0.05, "repeats": 1, "warmup_calls": 1,
    },
    "resize": {
        "configs": [{"backbone": "small_vgg", "native": 8, "px": 16, "channels": 1, "n": 32,
                     "batch": 16}],
        "repeats": 1,
    },
    "depthwise": {"px": 32, "batch": 8, "min_images": 8, "min_seconds": 0.05, "repeats": 1,
                  "variants": [0, 1]},   # two fresh processes: TF's import is the cost here
    "sweep": {
        "configs": [{"backbone": "small_vgg", "px": 16, "channels": 1, "n": 96}],
        "repeats": 1,
    },
    "memory": {"backbone": "small_vgg", "px": 16, "channels": 1, "n": 64, "factor": 6},
    "hdf5": {"backbone": "small_vgg", "px": 16, "channels": 1, "n_images": 64,
             "target_mb": 1, "chunk_rows": 256},
    "classical": {"dims": [8, 16], "n_train": 240, "n_test": 60, "n_classes": 3,
                  "pilot_rows": 120, "cell_budget_s": 20.0, "section_budget_s": 60.0,
                  "min_cell_s": 5.0, "min_first_step_s": 60.0, "n_jobs": 1,
                  "classifiers": ["logreg", "knn"]},
    "scale": {"rows": [2000, 6000], "width": 16, "n_classes": 3, "chunk_rows": 256},
    "classical_wide": {"n_train": 300, "n_test": 60, "dim": 32, "n_jobs": 1, "timeout_s": 120.0,
                       "compare_rows": 150, "compare_timeout_s": 120.0,
                       "changed": ["linear_svm", "rbf_svm", "random_forest", "xgboost"]},
    "e2e": {"timeout_s": 3600},
}


def get(quick: bool) -> dict:
    return copy.deepcopy(QUICK if quick else FULL)
