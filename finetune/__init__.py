"""Fine-tuned baselines at every depth and from scratch, in the classical stage's results table."""
