"""cutpoint: frozen CNN features + classical models vs fine-tuning, at every cut point.

Shared core used by every stage: configuration (`config`), datasets and splits (`datasets`),
provenance (`provenance`), metrics (`metrics`) and the results table (`results`).
"""
__version__ = "0.1.0"
