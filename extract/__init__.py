"""extract: the extraction stage — a dataset embedded at every cut point, into the HDF5 store.

- `extract.extractor` / `python -m extract`: the stage (`extract`): self-train if asked, then the
  backbone's store and the raw-pixel baseline's.
- `extract.plan`: planning an extraction of any registry entry, and writing its rows.
- `extract.distributed`: the same rows sharded over Dask workers.

Everything about the backbone itself (registry, weights, cutting, input preparation, own CNNs,
self-training) is in the `backbones` package. Submodules import TensorFlow; this package file
does not, so `import extract` stays cheap.
"""
