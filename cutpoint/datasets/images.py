"""Image files: decoding (Pillow), resizing and the parallel scan that checks a folder.

Every file is decoded fully once at scan time (`scan_images`) so that an unusable file is
skipped and reported before any split is decided, then again lazily by `decode_image` when its
pixels are asked for. 16-bit gray is scaled to 8 bits, alpha dropped, palette/CMYK → RGB, EXIF
orientation applied, animations give their first frame.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from cutpoint.datasets.errors import DatasetError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
GRAY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}

# backbone.resize_method (tf.image.resize's names) → the Pillow filter used where images must be
# resized one by one while decoding (folders of mixed sizes).
PIL_FILTERS = {"bilinear": "BILINEAR", "nearest": "NEAREST", "bicubic": "BICUBIC", "area": "BOX",
               "lanczos3": "LANCZOS"}


def pil_filter_name(method: str) -> str:
    if method not in PIL_FILTERS:
        raise DatasetError(f"Unknown resize method {method!r}. Expected one of "
                           f"{', '.join(PIL_FILTERS)} (backbone.resize_method).")
    return PIL_FILTERS[method]


def resize_image(img: np.ndarray, size, method="bilinear") -> np.ndarray:
    from PIL import Image
    h, w = size
    flt = getattr(Image.Resampling, pil_filter_name(method))
    if img.shape[2] == 1:
        out = Image.fromarray(img[..., 0], "L").resize((w, h), flt)
        return np.asarray(out)[..., None]
    return np.asarray(Image.fromarray(img, "RGB").resize((w, h), flt))


def to_gray8(im) -> np.ndarray:
    """Grayscale PIL image of any bit depth → uint8 (H, W). 16-bit images are SCALED to 8 bits
    (round(v / 257): 65535 → 255), never clipped; "I" (32-bit int, how some decoders hand out
    16-bit data) is read as 16-bit (values clipped to 0..65535 first); "F" is clipped to 0..255."""
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        return ((a * 255 + 32767) // 65535).astype(np.uint8)
    if im.mode == "F":
        return np.clip(np.rint(np.asarray(im)), 0, 255).astype(np.uint8)
    return np.asarray(im.convert("L"))


MAX_PIXELS = 89_478_485
"""Decompression-bomb limit (Pillow's own default, ≈ 9459 × 9459 px): larger images are skipped
with a reason that names it (an 8000 × 8000 image, 64 Mpx, is decoded). Raise it here
(`cutpoint.datasets.MAX_PIXELS = …`) for legitimately huge images."""


def open_image(path, draft_to=None):
    """Open, orient (EXIF) and fully decode one file; first frame of animations.

    `draft_to=(w, h)` lets JPEG decode at a reduced scale (libjpeg still reads every byte, so
    truncation is still caught): the folder scan checks files cheaply this way."""
    from PIL import Image, ImageOps
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", message="Palette images with Transparency")
        im = Image.open(path)
    try:
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise DatasetError(f"{w}×{h} = {w * h:,} px is above the decompression-bomb limit "
                               f"(cutpoint.datasets.MAX_PIXELS = {MAX_PIXELS:,} px)")
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)
        if draft_to is not None and im.format == "JPEG":
            im.draft(im.mode, draft_to)
        im.load()
        orientation = im.getexif().get(0x0112, 1)
        if orientation not in (None, 1):
            im = ImageOps.exif_transpose(im)
            if orientation in (5, 6, 7, 8):
                w, h = h, w
        return im, (h, w)
    except BaseException:
        im.close()
        raise


def decode_image(path: str, channels: int, size, method="bilinear") -> np.ndarray:
    """Decode one file to uint8 (h, w, channels): EXIF orientation applied, first frame of an
    animation, RGBA/LA/PA drop alpha, palette and CMYK → RGB, 16-bit scaled to 8 bits."""
    try:
        im, _ = open_image(path)
        with im:
            if channels == 1 or im.mode in ("I", "F") or im.mode.startswith("I;16"):
                arr = to_gray8(im)
                arr = np.repeat(arr[..., None], channels, axis=2)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    arr = np.asarray(im.convert("RGB"))
    except Exception as e:  # noqa: BLE001 — any decoder failure becomes a clear message
        raise DatasetError(f"Could not decode {path} ({type(e).__name__}: {e}). It was readable "
                           f"when the folder was scanned: it changed since. Re-run to rescan "
                           f"(it will then be skipped and reported).") from e
    if arr.shape[:2] != tuple(size):
        arr = resize_image(arr, size, method)
    return arr


def scan_one(path):
    """(mode, (h, w)) of a fully decoded file, or the reason it cannot be used."""
    try:
        im, hw = open_image(path, draft_to=(64, 64))
        with im:
            mode = im.mode
            if mode not in GRAY_MODES and mode not in ("I", "F"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    im.convert("RGB")  # CMYK, YCbCr, palette …: must convert, or it is skipped
        if min(hw) < 1:
            return f"empty image ({hw[1]}×{hw[0]})"
        return mode, hw
    except Exception as e:  # noqa: BLE001 — every unreadable file is reported, never fatal
        return f"{type(e).__name__}: {e}".strip()


def scan_images(paths, workers: int | None = None) -> list:
    """Fully decode every file (in threads: Pillow's decoders release the GIL), in order.

    Returns per file (mode, (h, w)) or a reason string. Why decode at scan time and not just
    `verify()`: a JPEG truncated halfway passes verify and only fails when decoded — at
    extraction, after the split and the store's rows were decided. Decoding here excludes it
    before anything depends on it. Cost: one extra decode per file, in parallel, JPEGs at
    reduced scale (`draft`), i.e. a fraction of the extraction's own decode + forward pass.
    """
    from concurrent.futures import ThreadPoolExecutor
    paths = [str(p) for p in paths]
    if not paths:
        return []
    workers = workers or min(16, 2 * (os.cpu_count() or 2))
    if workers <= 1 or len(paths) < 8:
        return [scan_one(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(scan_one, paths, chunksize=16))

