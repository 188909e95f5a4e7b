"""The raw-pixel baseline's embedding: the images themselves, at a bounded size, / 255, flattened.

It is the registry entry "pixels" (kind "pixels": no network, one cut also named "pixels" at the
input). Images are area-resized (PIL's BOX filter) only when their longest side exceeds
`extract.pixels_size`, so a large-image dataset cannot make the baseline dominate the run. Done in
numpy, not TensorFlow: these are the exact numbers every pixels.h5 has held.
"""
from __future__ import annotations

import numpy as np

PIXELS = "pixels"          # the entry's name, its one cut's alias, and its store's file stem
LAYER = "input"            # the "layer" the cut reads: the images themselves
POOLING = "flatten"
DESCRIPTION = "x / 255, flattened"


def pixels_shape(image_shape, cap: int):
    """The raw-pixel store's (h, w): the data's size with its longest side capped at `cap`
    (aspect kept, rounded); images of mixed sizes → (cap, cap); cap 0 = native (None if mixed)."""
    cap = int(cap or 0)
    if image_shape is None:
        return (cap, cap) if cap else None
    h, w = int(image_shape[0]), int(image_shape[1])
    if not cap or max(h, w) <= cap:
        return h, w
    scale = cap / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def area_resize(images: np.ndarray, hw) -> np.ndarray:
    """uint8 (n, h, w, c) → (n, *hw, c) by area averaging (PIL's BOX filter): the right filter
    for shrinking, with no aliasing."""
    from PIL import Image
    if tuple(images.shape[1:3]) == tuple(hw):
        return images
    out = np.empty((len(images), *hw, images.shape[-1]), np.uint8)
    for i, im in enumerate(images):
        if im.shape[-1] == 1:
            out[i, ..., 0] = np.asarray(Image.fromarray(im[..., 0], "L").resize(
                (hw[1], hw[0]), Image.BOX))
        else:
            out[i] = np.asarray(Image.fromarray(im, "RGB").resize((hw[1], hw[0]), Image.BOX))
    return out


def pixel_batch(dataset, rows, hw) -> np.ndarray:
    """Images of `rows` at `hw`, area-resized from their native size (one by one when mixed)."""
    if dataset.image_shape is not None:
        return area_resize(dataset.images(rows), hw)
    return np.concatenate([area_resize(dataset.images([r]), hw) for r in rows])


def scale(x) -> np.ndarray:
    """The entry's preprocessing: uint8 images → float32 rows in [0, 1], one per image."""
    x = np.asarray(x)
    return x.reshape(len(x), -1).astype(np.float32) / 255.0
