"""The dataset registry: `load(name, path, **options)`, `available()`, `register(name)`.

Built on the project's one registry vocabulary (`cutpoint.registry.Registry`). The built-in
loaders are registered here, in one table; `@register("mine")` adds a loader of one's own (a
function `(path="", **options) -> Dataset`).
"""
from __future__ import annotations

import inspect

from cutpoint.datasets.arrays import (load_cifar10, load_cifar100, load_digits,
                                      load_fashion_mnist, load_mnist, load_npz)
from cutpoint.datasets.errors import DatasetError
from cutpoint.datasets.folder import load_folder
from cutpoint.datasets.view import Dataset
from cutpoint.registry import Registry

DATASETS = Registry("dataset", DatasetError)
for _name, _loader in {"cifar10": load_cifar10, "cifar100": load_cifar100, "digits": load_digits,
                       "fashion_mnist": load_fashion_mnist, "folder": load_folder,
                       "mnist": load_mnist, "npz": load_npz}.items():   # in name order
    DATASETS.register(_name, _loader)


def register(name: str):
    """Decorator: register a loader `(path="", **options) -> Dataset` under `name`."""
    return DATASETS.register(name)


def available() -> list[str]:
    return sorted(DATASETS.available())


def load(name: str, path="", **kw) -> Dataset:
    """Load a registered dataset by name; `path` and keyword options go to its loader."""
    fn = DATASETS.get(name)
    params = inspect.signature(fn).parameters
    unknown = [k for k in kw if k not in params]
    if unknown:
        opts = [p for p in params if p != "path"]
        raise DatasetError(f"Dataset {name!r} does not take the option(s) {unknown}. Its options: "
                           f"{opts or 'none'}.")
    return fn(path=str(path) if path else "", **kw)
