"""extract: the backbone registry, self-trained backbones, and the extraction stage.

- `extract.backbones`: registry (`list_backbones`, `get_spec`, `describe_registry`), weights from
  every source (`load_backbone`), preprocessing (`preprocess_fn`), input sizes (`input_shape_for`),
  cut points (`resolve_cuts`, `cut_model`, `cut_widths`, `block_layers`).
- `extract.models`: the project's own small CNNs (`build_classifier`, `build_trunk`).
- `extract.train`: self-training an own CNN on the source half (`train_backbone`).
- `extract.extractor` / `python -m extract`: the extraction stage into the HDF5 store.

Submodules import TensorFlow; this package file does not, so `import extract` stays cheap.
"""
