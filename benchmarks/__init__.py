"""Speed and memory benchmarks of cutpoint's stages, measured side by side in one run.

`python -m benchmarks [--quick] [--only SECTION,...] [--e2e] [--out benchmarks/]` (`make bench`)
writes `results.json` (every number, the machine, the method of each measurement) and
`results.md` (the same as Markdown tables, with each target marked "met" or "missed by X %").

Sections, one module each, each a `run(sizes, ctx) -> dict` that never sees the others' failures:
  peak        TensorFlow float32 matmul GFLOP/s: the yardstick for extraction speed  (peak.py)
  extraction  images/s and achieved GFLOP/s of the compiled forward pass             (extraction.py)
  sweep       one-pass k-cut extraction vs the naive per-cut predict loop            (sweep.py)
  memory      peak RSS of extracting N vs 6N images, each in a fresh process         (memory.py)
  hdf5        store write/read MB/s and file size per dtype x compression           (storage.py)
  classical   fit_select + predict seconds per classifier on synthetic embeddings    (classifiers.py)
  scale       out-of-core logreg / XGBoost on Dask: worker peak RSS at 2 row counts  (scale.py)
  e2e         wall time of `make extract` / `make classify` (opt-in: --e2e)          (e2e.py)

Numbers are measured, never asserted: tests only check the outputs' structure (`--quick`).
Sizes for both modes live in `sizes.py`, in one place.
"""
