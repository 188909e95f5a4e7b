"""Predicting with a saved classical model, above the stages: it composes extraction (the
backbone, cut and pooling recorded with the model) and the classical model.

    predict(model, out, images=…)   new images — an .npz, a folder of unlabelled images (flat or
                                    not) or a list of image files — embedded exactly as the
                                    model's training store was, then classified
    predict(model, out, store=…)    one split of an embedding store extracted the same way
                                    (`classical.bundle.predict_store`)

The output is a CSV (id, pred_label, pred_class, p_<class>…); files that cannot be decoded are
skipped, never fatal, and listed with the reason in `<out>.skipped.csv` (`skipped_path`).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

from classical.bundle import load_bundle, predict_store, write_predictions
from cutpoint import datasets

log = logging.getLogger("predict")

__all__ = ["predict", "predict_images", "predict_store", "skipped_path"]


def skipped_path(out) -> Path:
    """Where predict lists the files it skipped: preds.csv → preds.skipped.csv."""
    out = Path(out)
    return out.with_name(f"{out.stem}.skipped.csv")


def predict_images(model_path, images_path, out) -> int:
    """Apply a saved model to new images — an .npz, a folder of unlabelled images (flat or
    not) or a list of image files — embedded exactly as the model's training store was: same
    backbone, weights, cut, pooling, input size, preprocessing, channels. Files that cannot be
    decoded are skipped, never fatal: listed with the reason in `<out>.skipped.csv`."""
    from backbones.embed import embed_images

    bundle = load_bundle(model_path)
    paths = [images_path] if isinstance(images_path, (str, Path)) else list(images_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", datasets.DatasetWarning)   # reported below instead
        if len(paths) == 1 and str(paths[0]).endswith(".npz"):
            ds = datasets.load("npz", str(paths[0]))
        else:
            ds = datasets.load_unlabelled(paths)
    report = skipped_path(out)
    if ds.skipped:
        ds.write_skipped_report(report)
        log.warning("skipped %d file(s) that could not be decoded: listed in %s",
                    len(ds.skipped), report)
    else:
        report.unlink(missing_ok=True)
    X = embed_images(bundle["store_provenance"], bundle["extraction"]["cut"], ds)
    return write_predictions(out, bundle, list(ds.ids), X)


def predict(model, out, *, images=None, store=None, split="test") -> int:
    """Predictions of the saved model `model` (a model.joblib) for new `images` or for one
    `split` of an embedding `store`, written to `out`; returns the number of rows."""
    if (images is None) == (store is None):
        raise ValueError("Pass either images (new images to embed) or store (an embedding "
                         "store), not both.")
    if store is not None:
        return predict_store(model, store, out, split)
    return predict_images(model, images, out)
