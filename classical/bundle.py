"""The saved model bundle (`classical/<run_id>/model.joblib`) and predicting with it.

A bundle is a dict: the fitted pipeline, its label encoder and classes, the class names, the
classifier and run id, how the features were made (`extraction_record`: what the model must be
fed again), the store's provenance, the config, the selection record, package and code versions.
`predict_store` applies one to a split of an embedding store extracted the same way (anything
else is refused by `check_extraction`); `predict` (the package above the stages) applies one to
new images.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from classical import pipelines, protocol
from classical.stores import no_cut_error
from cutpoint.provenance import code_version, package_versions
from embeddings import store

# The extraction settings a model depends on: predicting from a store that differs in any of
# them would feed the model features it was not trained on.
EXTRACTION_FIELDS = ("backbone", "weights", "cut", "layer", "pooling", "width", "input_size",
                     "resize_method", "preprocess", "channels")


def extraction_record(prov: dict, cut: str, attrs: dict) -> dict:
    """How a cut's features were made: what a saved model must be fed again."""
    binfo = prov.get("backbone_info") or {}
    weights_hash = binfo.get("weights_sha256")
    return {
        "backbone": prov.get("backbone"),
        # The hash identifies the weights wherever the file lives; without one, the source.
        "weights": f"sha256:{weights_hash}" if weights_hash else prov.get("weights"),
        "weights_source": prov.get("weights"),
        "cut": cut, "layer": attrs.get("layer"), "pooling": attrs.get("pooling"),
        "width": attrs.get("width"), "input_size": prov.get("input_size"),
        "resize_method": prov.get("resize_method"), "preprocess": prov.get("preprocess"),
        "channels": prov.get("channels"), "dataset": prov.get("dataset"),
        "extraction_key": prov.get("extraction_key"),
    }


def _label_encoder(model):
    from sklearn.preprocessing import LabelEncoder
    final = model[-1]
    if isinstance(final, pipelines.LabelEncodedClassifier):
        return final.label_encoder_
    return LabelEncoder().fit(model.classes_)


def make_bundle(model, name, run_id, prov, cut, attrs, class_names, cfg, selection) -> dict:
    """The bundle of a fitted pipeline trained on `cut` of the store with provenance `prov`."""
    return {"pipeline": model, "label_encoder": _label_encoder(model),
            "classes": np.asarray(model.classes_), "class_names": list(class_names),
            "classifier": name, "run_id": run_id,
            "extraction": extraction_record(prov, cut, attrs),
            "store_provenance": {k: v for k, v in prov.items() if k != "config"},
            "config": cfg, "selection": selection, "packages": package_versions(),
            "code_version": code_version()}


def load_bundle(model_path) -> dict:
    import joblib

    bundle = joblib.load(model_path)
    if not isinstance(bundle, dict) or "pipeline" not in bundle:
        raise ValueError(f"{model_path} is not a model saved by `python -m classical run` "
                         f"(expected a dict with a 'pipeline'). Got {type(bundle).__name__}.")
    return bundle


def check_extraction(model_extraction: dict, store_extraction: dict, store_path) -> None:
    """Refuse a store whose features were made differently from the model's training ones."""
    diff = [f for f in EXTRACTION_FIELDS
            if model_extraction.get(f) != store_extraction.get(f)]
    if diff:
        lines = "; ".join(f"{f}: model {model_extraction.get(f)!r}, store "
                          f"{store_extraction.get(f)!r}" for f in diff)
        raise ValueError(f"{store_path} was not extracted like the model's training embeddings "
                         f"({lines}). Re-extract it with the model's backbone, weights, cut, "
                         f"pooling, input size and preprocessing, or use a model trained on "
                         f"this store.")


def predict_embeddings(model_bundle: dict, X):
    """(pred labels, proba with one column per entry of model_bundle["classes"], or (n, 0)).

    The hook for predicting from raw images: embed them with the bundle's recorded extraction
    (model_bundle["extraction"]) and pass the features here."""
    model = model_bundle["pipeline"]
    X = np.asarray(X)
    width = model_bundle.get("extraction", {}).get("width")
    if X.ndim != 2 or (width and X.shape[1] != width):
        raise ValueError(f"The model takes embeddings of shape (n, {width}). Got {X.shape}.")
    protocol.as_xy(X, np.zeros(len(X)), "predict")
    pred, proba, _ = protocol.predict_with_proba(model, X)
    return pred, proba


def write_predictions(out, bundle, ids, X) -> int:
    """Predict the rows of X and write `out` (CSV: id, pred_label, pred_class, p_<class>…)."""
    pred, proba = predict_embeddings(bundle, X)
    classes = list(bundle["classes"])
    name_of = protocol.class_names_for(np.asarray(classes), bundle["class_names"])
    lookup = dict(zip(classes, name_of))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "pred_label", "pred_class"] + [f"p_{n}" for n in name_of][
            :proba.shape[1]])
        for i, p, row in zip(ids, pred, proba if proba.size else [[]] * len(ids)):
            w.writerow([i, p, lookup[p]] + [f"{v:.6g}" for v in row])
    return len(ids)


def predict_store(model_path, store_path, out, split="test") -> int:
    """Apply a saved model to one split of a store; write id, prediction and probabilities."""
    bundle = load_bundle(model_path)
    cut = bundle["extraction"]["cut"]
    available = store.cuts(store_path)
    if cut not in available:
        raise no_cut_error(cut, {str(store_path): list(available)})
    check_extraction(bundle["extraction"],
                     extraction_record(store.provenance(store_path), cut, available[cut]),
                     store_path)
    X, _, ids = store.read(store_path, cut, split=split)
    return write_predictions(out, bundle, ids, X)
