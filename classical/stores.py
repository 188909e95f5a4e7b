"""The embedding stores a classical run trains on: which (store, cut) pairs a run folder offers,
the splits of one cut, a store's content identity (part of every classical run id) and the
results columns of a model trained on one cut (`store_columns`, for `results.build_row`)."""
from __future__ import annotations

from pathlib import Path

from backbones.registry import is_pixels
from cutpoint import runfolder as rf
from cutpoint.provenance import hash_obj
from cutpoint.registry import did_you_mean
from embeddings import store

STORES = rf.STORES


def no_cut_error(cut, available: dict) -> ValueError:
    """`cut` is in none of the stores (`available`: store → its cuts): say so and how to add it."""
    names = [c for cs in available.values() for c in cs]
    where = "; ".join(f"{p}: {cs}" for p, cs in available.items())
    return ValueError(f"Cut {cut!r} is not in the embedding stores ({where})."
                      f"{did_you_mean(cut, names)} To add it, extract it with "
                      f"`make extract CUTS={cut}`.")


def plan_cuts(run_dir: Path, wanted=None) -> list[tuple[Path, str, dict]]:
    """[(store path, cut, cut attrs)] to train on, in store then cut order."""
    run_dir = Path(run_dir)
    paths = [run_dir / s for s in STORES if (run_dir / s).exists()]
    if not (run_dir / STORES[0]).exists():
        raise FileNotFoundError(f"No embedding store at {run_dir / STORES[0]}. Create it with "
                                f"`make extract` (or `python -m extract --config … --run-dir "
                                f"{run_dir}`).")
    available = {p: store.cuts(p) for p in paths}
    plan = [(p, c, a) for p, cs in available.items() for c, a in cs.items()]
    if not wanted:
        return plan
    missing = [c for c in wanted if c not in {c for _, c, _ in plan}]
    if missing:
        raise no_cut_error(missing[0], {str(p): list(cs) for p, cs in available.items()})
    return [item for item in plan if item[1] in wanted]


def load_split(path, cut) -> dict:
    """{split: (X, y, ids)} of one cut for 'train', 'val' and 'test': the rows the experiment's
    split owner (`cutpoint.splits.prepare`) recorded in the store."""
    bounds = store.splits(path)
    for name in ("train", "val", "test"):
        if name not in bounds or bounds[name][1] <= bounds[name][0]:
            raise ValueError(f"{path} has no rows in its {name!r} split (splits: "
                             f"{ {k: b - a for k, (a, b) in bounds.items()} }). Classical models "
                             f"are fitted on 'train', selected on 'val' and scored on 'test'; "
                             f"stores of older cutpoint versions have no 'val' split: re-extract "
                             f"with `make extract`.")
    return {s: store.read(path, cut, split=s) for s in ("train", "val", "test")}


def store_identity(prov: dict) -> str:
    """The store's content identity: its extraction key, else a hash of its provenance
    without what does not change the numbers (the config of later stages, versions)."""
    if prov.get("extraction_key"):
        return str(prov["extraction_key"])
    return hash_obj({k: v for k, v in prov.items()
                     if k not in ("config", "packages", "code_version", "created")})


def store_columns(prov: dict, cut: str, attrs: dict, classifier: str, dataset: str = "") -> dict:
    """The columns of a classical model trained on one cut of an embedding store, from the
    store's provenance (`prov`) and the cut's attributes (`attrs`): method ("frozen+<name>", or
    "pixels+<name>" on the raw-pixel store), backbone, weights, cut, layer, pooling, classifier,
    frozen_blocks, dataset (`dataset` when the store does not name one) and split_def (the
    definition, for `build_row`)."""
    pixels = is_pixels(prov.get("backbone"))
    return {"method": f"{'pixels' if pixels else 'frozen'}+{classifier}",
            "backbone": prov.get("backbone", ""), "weights": prov.get("weights", ""), "cut": cut,
            "layer": attrs.get("layer", ""), "pooling": attrs.get("pooling", ""),
            "classifier": classifier, "frozen_blocks": cut_frozen_blocks(prov, attrs),
            "dataset": prov.get("dataset", dataset), "split_def": prov.get("split_def")}


def cut_frozen_blocks(prov: dict, attrs: dict):
    """Backbone blocks below a store's cut (Yosinski's n): the cut's own `frozen_blocks`
    attribute, else its layer's position among the backbone's blocks; None when unknown."""
    if attrs.get("frozen_blocks") not in (None, ""):
        return int(attrs["frozen_blocks"])
    blocks = list((prov.get("backbone_info") or {}).get("blocks") or prov.get("blocks") or [])
    if attrs.get("layer") in blocks:
        return blocks.index(attrs["layer"]) + 1
    return None
