"""The HDF5 embedding store (format spec: `embeddings.store`'s docstring).

Every function takes a path, so it works from Dask tasks and notebooks alike::

    from embeddings import store
    X, y, ids = store.read("runs/default/embeddings.h5", "block3", split="train")
"""
from embeddings.store import (FORMAT_NAME, FORMAT_VERSION, StoreError, class_names, create, cuts,
                              info, is_complete, join_shards, provenance, read, read_samples,
                              read_umap, root_attrs, rows_done, samples_hash,
                              split_order_index, splits, write_rows, write_umap)

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "StoreError", "class_names", "create", "cuts", "info",
           "is_complete", "join_shards", "provenance", "read", "read_samples", "read_umap",
           "root_attrs", "rows_done", "samples_hash", "split_order_index", "splits", "write_rows",
           "write_umap"]
