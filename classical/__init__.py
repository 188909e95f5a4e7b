"""Classical models on frozen embeddings (BRIEF §6): sklearn/XGBoost pipelines, tuned on train.

- `classical.pipelines`: the registry (`available()`, `describe()`, `make(name, seed, n_jobs)`).
- `classical.protocol`: `fit_select` (validation split carved from train, refit on all of train),
  `evaluate` (the test split, scored once), `validate_inputs`. No file I/O.
- `python -m classical`: `--list`, `run` (every store × cut × classifier into results.csv) and
  `predict` (a saved model applied to a store).
"""
from classical.pipelines import available, describe, make
from classical.protocol import evaluate, fit_select, validate_inputs

__all__ = ["available", "describe", "make", "fit_select", "evaluate", "validate_inputs"]
