"""Classical models on frozen embeddings (BRIEF §6): sklearn/XGBoost pipelines, tuned on train.

- `classical.pipelines`: the registry (`available()`, `describe()`, `make(name, seed, n_jobs)`).
- `classical.protocol`: `fit_select` (validation split carved from train, refit on all of train),
  `evaluate` (the test split, scored once), `validate_inputs`. No file I/O.
- `classical.stores`: the (store, cut) pairs of a run folder, their splits, a store's identity.
- `classical.bundle`: the saved model bundle, checked against a store, and predicting with it.
- `classical.runner`: the stage (`run_stage`, `run`): every store × cut × classifier into
  results.csv, `classical.distributed` for Dask and out-of-core fits.
- `python -m classical`: `--list` and `run`. Applying a saved model to a store or to new
  images is `python -m predict` (the `predict` package, above the stages).
"""
from classical.pipelines import available, describe, make
from classical.protocol import evaluate, fit_select, validate_inputs

__all__ = ["available", "describe", "make", "fit_select", "evaluate", "validate_inputs"]
