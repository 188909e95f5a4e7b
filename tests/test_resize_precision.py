"""Resizing inside the compiled forward pass, and `extract.precision` (issue 15, points 1 and 5).

Tolerances, and why:
- RESIZE_RTOL = 1 %: Pillow's bilinear (the old per-image path) and tf.image.resize's bilinear
  (half-pixel centres) interpolate the same points, but Pillow uses 8-bit fixed-point weights
  and rounds the result to uint8, so the pixels differ by at most 1 grey level (0.4 % of the
  range, ~0.34 on average). Through the small random-weight nets below that moves each cut's
  embeddings by 0.1-0.5 % (relative Frobenius norm); 1 % leaves room for other weights, and a
  real resize bug (wrong size, corner alignment, channel order) is far above it.
- BF16_RTOL = 3 %: bfloat16 keeps 8 significant bits (relative rounding 2^-9 = 0.2 % per
  operation); over the 6-7 layers of these nets the embeddings moved 0.3-1.1 %.
"""
import numpy as np
import pytest

from conftest import write_toy_npz
from cutpoint import config, results
from cutpoint import datasets as cds
from cutpoint.splits import prepare
from embeddings import store

RESIZE_RTOL = 0.01
BF16_RTOL = 0.03


def _cfg(tmp_path, *sets):
    return config.load(None, [
        "dataset.name=npz", f"dataset.path={write_toy_npz(tmp_path / 'toy.npz')}",
        "dataset.source_classes=[]", "dataset.target_classes=[]", "backbone.name=small_vgg",
        "backbone.weights=none", "extract.batch_size=16", "extract.chunk_rows=32",
        "extract.pixels=false", *sets])


def _rel(a, b) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b))


def _old_path_embeddings(cfg):
    """What the store would hold had the images been resized one by one with Pillow before the
    forward pass (the old way): same model, same weights, inputs already at the model's size."""
    from backbones.embed import make_forward
    from backbones.inputs import apply_channels
    from extract.plan import plan
    prepared = apply_channels(cfg, prepare(cfg))
    p = plan(cfg, "none", prepared)
    (h, w, c), target = p["input"], p["target"]
    pil = target.images(p["order"], size=(h, w))           # Pillow, per image
    assert pil.shape[1:3] == (h, w)
    forward = make_forward(p["cut_model"], p["spec"], (h, w, c))
    outs = [o.numpy() for o in forward(pil)]
    return dict(zip(p["cuts_meta"], outs)), target.images(p["order"]), pil


def test_array_data_is_fed_at_native_size_and_resized_in_the_graph(tmp_path):
    from backbones.inputs import image_pipeline
    from extract.extractor import extract
    cfg = _cfg(tmp_path, "backbone.input_size=32")
    extract(cfg, tmp_path / "run")
    path = tmp_path / "run" / "embeddings.h5"
    prov = store.provenance(path)
    assert prov["input_size"] == [32, 32, 1] and prov["data_shape"] == [16, 16, 1]
    assert prov["resize_method"] == "bilinear"
    assert prov["resize"].startswith("16x16 to 32x32: tf.image.resize (bilinear)")
    # The pipeline hands the forward pass the 16 px originals, not resized copies.
    target = prepare(cfg)["target"]
    first = next(iter(image_pipeline(target, np.arange(len(target)), 16, size=(32, 32))))
    assert tuple(first.shape[1:]) == (16, 16, 1)

    import tensorflow as tf
    old, native, pil = _old_path_embeddings(cfg)
    tf_px = tf.image.resize(tf.cast(native, tf.float32), (32, 32)).numpy()
    assert np.abs(tf_px - pil).max() <= 1.0 + 1e-4         # the premise of RESIZE_RTOL
    for cut, want in old.items():
        got = store.read(path, cut)[0]
        assert got.shape == want.shape
        assert _rel(got, want) < RESIZE_RTOL, cut


def test_native_size_is_not_resized_and_equals_an_explicit_float32_pass(tmp_path):
    """The default experiment (own CNN at the data's size): no resize op, float32 numbers equal
    to the model applied to the cast images, bit for bit."""
    import tensorflow as tf
    from extract.extractor import extract
    from extract.plan import plan
    cfg = _cfg(tmp_path)
    assert cfg["backbone"]["input_size"] == 0 and cfg["extract"]["precision"] == "float32"
    extract(cfg, tmp_path / "run")
    path = tmp_path / "run" / "embeddings.h5"
    prov = store.provenance(path)
    assert prov["resize"] == "none (native size)" and prov["precision"] == "float32"
    assert prov["compute_dtype"] == "float32"
    p = plan(cfg, "none", prepare(cfg))
    x = p["target"].images(p["order"])
    explicit = tf.function(lambda b: p["cut_model"](tf.cast(b, tf.float32), training=False))
    bs = cfg["extract"]["batch_size"]         # same batches: oneDNN's sums depend on the batch
    outs = [explicit(x[i:i + bs]) for i in range(0, len(x), bs)]
    for k, cut in enumerate(p["cuts_meta"]):
        want = np.concatenate([o[k].numpy() for o in outs])
        got = store.read(path, cut)[0]
        assert got.dtype == np.float32 and np.array_equal(got, want), cut


def test_bfloat16_extraction_is_close_recorded_and_keyed(tmp_path):
    from extract.extractor import extract
    f32 = extract(_cfg(tmp_path), tmp_path / "f32")
    bf16 = extract(_cfg(tmp_path, "extract.precision=bfloat16"), tmp_path / "bf16")
    assert bf16["extraction_key"] != f32["extraction_key"]    # a change re-extracts
    a, b = tmp_path / "f32" / "embeddings.h5", tmp_path / "bf16" / "embeddings.h5"
    prov = store.provenance(b)
    assert prov["precision"] == "bfloat16" and prov["compute_dtype"] == "bfloat16"
    for cut in store.cuts(a):
        x32, xb = store.read(a, cut)[0], store.read(b, cut)[0]
        assert xb.dtype == np.float32                         # stored as configured
        assert not np.array_equal(x32, xb), cut               # it did compute in bfloat16
        assert _rel(xb, x32) < BF16_RTOL, cut


def test_precision_setting_is_validated_and_defines_the_experiment():
    with pytest.raises(config.ConfigError, match="extract.precision.*Got 'fp16'"):
        config.load(None, ["extract.precision=fp16"])
    with pytest.raises(config.ConfigError, match="backbone.resize_method.*Got 'cubic'"):
        config.load(None, ["backbone.resize_method=cubic"])
    base = config.load(None)
    legacy = {s: dict(v) for s, v in base.items()}
    del legacy["extract"]["precision"]                   # a config from before the setting
    assert results.experiment_id(base) == results.experiment_id(legacy)
    assert results.experiment_id(config.load(None, ["extract.precision=bfloat16"])) != \
        results.experiment_id(base)


def test_finetune_in_bfloat16_keeps_a_float32_softmax_and_its_own_run_id():
    import keras

    from backbones import registry
    from backbones.weights import load_backbone, with_precision
    from finetune import finetune as ft
    from finetune.run import run_identity
    keras.utils.set_random_seed(0)
    base32 = load_backbone("small_vgg", weights="none", input_shape=(16, 16, 1))[0]
    base16 = with_precision(base32, "bfloat16")
    assert with_precision(base32, "float32") is base32            # float32: untouched
    assert {l.compute_dtype for l in base16.layers[1:]} == {"bfloat16"}
    m32, m16 = ft.build_model(base32, 3, seed=0), ft.build_model(base16, 3, seed=0)
    m16.get_layer("head").set_weights(m32.get_layer("head").get_weights())
    assert m16.get_layer("head").compute_dtype == "float32" and m16.output.dtype == "float32"
    x = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 1)).astype(np.float32)
    y = np.arange(32) % 3
    p32, p16 = m32.predict(x, verbose=0), m16.predict(x, verbose=0)
    assert p16.dtype == np.float32 and _rel(p16, p32) < BF16_RTOL
    # a float32 softmax: rows sum to 1 to float32 rounding (bfloat16 would be off by ~1e-2)
    np.testing.assert_allclose(p16.sum(axis=1), 1.0, atol=1e-5)
    ft.set_depth(base16, registry.get("small_vgg"), 4)
    ft._compile(m16, 1e-3, "bfloat16")
    kernel = base16.get_layer("block3_conv2").kernel
    before = kernel.numpy().copy()
    loss = m16.fit(x, y, epochs=1, batch_size=16, verbose=0).history["loss"][-1]
    assert np.isfinite(loss) and kernel.dtype == "float32"     # float32 master weights …
    assert not np.array_equal(kernel.numpy(), before)          # … that the bf16 steps update
    m = ft.build_model(with_precision(base32, "mixed_float16"), 3, seed=0)
    ft._compile(m, 1e-3, "mixed_float16")
    assert isinstance(m.optimizer, keras.optimizers.LossScaleOptimizer)

    prov = {"weights_sha256": "random"}
    cfg = config.load(None)
    same = run_identity(cfg, 2, prov, (16, 16, 1), {})
    assert "precision" not in same            # float32 runs keep the ids they had
    other = run_identity(config.load(None, ["extract.precision=bfloat16"]), 2, prov,
                         (16, 16, 1), {})
    assert other["precision"] == "bfloat16" and other != same


def test_mixed_size_folder_is_resized_while_decoding_with_the_configured_filter(tmp_path):
    from PIL import Image

    from extract.extractor import extract
    rng = np.random.default_rng(0)
    for c, cls in enumerate(["cat", "dog"]):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (10 + 3 * i, 12 + c, 3), dtype=np.uint8),
                            "RGB").save(tmp_path / "imgs" / cls / f"{i}.png")
    ds = cds.load("folder", tmp_path / "imgs")
    assert ds.image_shape is None
    raw = ds.images([0])[0]                                  # one row: its own size
    for method, flt in (("nearest", "NEAREST"), ("bilinear", "BILINEAR")):
        want = np.asarray(Image.fromarray(raw, "RGB").resize(
            (20, 20), getattr(Image.Resampling, flt)))
        assert np.array_equal(ds.images([0], size=(20, 20), method=method)[0], want), method
    cfg = config.load(None, [
        "dataset.name=folder", f"dataset.path={tmp_path / 'imgs'}", "dataset.source_classes=[]",
        "dataset.target_classes=[]", "backbone.name=small_vgg", "backbone.weights=none",
        "backbone.input_size=16", "backbone.resize_method=nearest", "extract.batch_size=4",
        "extract.pixels=false"])
    extract(cfg, tmp_path / "run")
    prov = store.provenance(tmp_path / "run" / "embeddings.h5")
    assert prov["resize_method"] == "nearest"
    assert "while decoding (Pillow NEAREST" in prov["resize"]
