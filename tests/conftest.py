"""Shared test settings: offline, quiet TensorFlow, the checkout on sys.path."""
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")
# Tests never download: point Keras' cache at an empty folder and forbid network datasets.
os.environ["CUTPOINT_OFFLINE"] = "1"
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def write_toy_npz(path, n_train=96, n_test=32, size=16, n_classes=4, seed=0):
    """A tiny learnable image set: noise plus one bright quadrant per class (uint8, 1 channel)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y_tr, y_te = rng.integers(0, n_classes, n_train), rng.integers(0, n_classes, n_test)

    def imgs(y):
        x = rng.integers(0, 60, (len(y), size, size, 1))
        for i, c in enumerate(y):
            r, q = divmod(int(c) % 4, 2)
            x[i, r * size // 2:(r + 1) * size // 2, q * size // 2:(q + 1) * size // 2] += 150
        return x.astype(np.uint8)

    np.savez(path, x_train=imgs(y_tr), y_train=y_tr, x_test=imgs(y_te), y_test=y_te)
    return path


def write_synthetic_idx(folder, n_train: int = 200, n_test: int = 50, shape=(28, 28),
                        n_classes: int = 10, seed: int = 0) -> Path:
    """Write the four Fashion-MNIST-named IDX .gz files with tiny class-dependent images
    (a bright bar whose position encodes the class, plus noise): separable fixtures for tests
    of later stages (point CUTPOINT_DATA at `folder`; load with verify=False)."""
    import numpy as np

    from cutpoint import datasets as D
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = shape
    for split, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % n_classes
        rng.shuffle(y)
        x = rng.integers(0, 60, size=(n, h, w)).astype(np.uint8)
        for i, c in enumerate(y):
            r0 = int(c * (h - 2) / n_classes)
            x[i, r0:r0 + max(2, h // n_classes), :] = 200 + rng.integers(0, 55)
        D.write_idx(folder / D.IDX_FILES[split][0], x)
        D.write_idx(folder / D.IDX_FILES[split][1], y.astype(np.uint8))
    return folder
