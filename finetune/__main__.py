"""`python -m finetune --config runs/<exp>/config.toml --run-dir runs/<exp> [--depths 0,2,all,scratch]`

Trains the configured backbone end to end at every requested depth (default: 0 … all, then from
scratch) on the experiment's target data and appends one row per run to results.csv. k = 0 is the
linear probe (logistic regression, C chosen on val, loaded as the head); every k >= 1 starts from
it, with its learning rate chosen on val (finetune.learning_rates). Runs already
in the table are skipped, so an interrupted sweep resumes where it stopped.
"""
import argparse
import json
import logging
import os
import sys

from cutpoint import runfolder as rf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None)
    p.add_argument("--run-dir", default=None)
    p.add_argument("--depths", default=None, help="comma-separated: 0,1,…,all,scratch")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from cutpoint import config, results
    from cutpoint.runlock import run_lock
    from finetune.run import run_finetune
    try:
        cfg = config.load(args.config, args.sets)
        run_dir = args.run_dir or os.path.join("runs", cfg["experiment"]["name"])
        depths = [d for d in args.depths.split(",") if d.strip()] if args.depths else None
        with run_lock(run_dir, "finetune"):
            run_finetune(cfg, run_dir, depths=depths)
    except ValueError as e:   # RunLockedError included
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = [r for r in results.comparable(results.read(rf.results_csv(run_dir)), cfg)
            if r["stage"] in ("finetune", "scratch")]
    summary = [{k: r[k] for k in ("run_id", "method", "val_accuracy", "accuracy", "fit_seconds",
                                  "epochs", "trainable_params")} for r in rows]
    rf.done_json(run_dir, rf.FINETUNE).parent.mkdir(parents=True, exist_ok=True)
    with open(rf.done_json(run_dir, rf.FINETUNE), "w") as f:
        json.dump(summary, f, indent=1)
    for r in summary:
        val = float("nan") if r["val_accuracy"] is None else r["val_accuracy"]
        print(f"{r['method']:<16} val {val:.4f}  test {r['accuracy']:.4f}  "
              f"{r['fit_seconds']:>8.1f} s  "
              f"{r['trainable_params']:>9} trainable params")
    return 0


if __name__ == "__main__":
    sys.exit(main())
