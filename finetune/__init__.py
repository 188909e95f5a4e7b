"""Fine-tuned baselines at every depth and from scratch, one row each in the run's results table
(`results.csv`, shared by every stage).

- `finetune.finetune`: depth semantics, the model, one training run (`train_at_depth`).
- `finetune.run` / `python -m finetune`: the stage (`run_finetune`) and the `Context` the
  label-efficiency curve trains through too.
"""
