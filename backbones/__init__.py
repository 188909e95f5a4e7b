"""backbones: everything about a backbone, for every stage (extract, finetune, curve, predict).

- `backbones.registry`: name → `BackboneSpec` (`get`, `available`, `register`): how to build it,
  its preprocessing callable, its cut points and, separately, its fine-tuning blocks
  (`frozen_blocks`: the one place depth and cut become Yosinski's n). "pixels", the raw-pixel
  baseline, is an entry too (`is_pixels`).
- `backbones.weights`: `load_backbone` from every weights source, `with_precision`.
- `backbones.cut`: cut points, pooling, widths, fine-tuning blocks, the --list table.
- `backbones.inputs`: input size and channels, and `prepare_inputs`, the one way images become a
  network's input (extraction, self-training and fine-tuning all use it).
- `backbones.embed`: the compiled forward pass, and `embed_images` (new images, like a store).
- `backbones.own`: the project's own small CNNs; `backbones.pixels`: the raw-pixel embedding.
- `backbones.train`: self-training an own CNN, and the pipeline and determinism fine-tuning shares.

The package sits between the core (`cutpoint`, `embeddings`) and the stages: it imports the core
only, and the stages import it, never each other. This file imports nothing, so that naming a
backbone stays cheap; `registry`, `inputs`, `own`, `pixels` and `train` load TensorFlow only when
they build or run something.
"""
