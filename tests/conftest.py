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
