"""`python -m curve --config runs/<exp>/config.toml --run-dir runs/<exp> [--budgets 1,5,20]
[--seeds 0,1,2]`

Runs every (labels-per-class budget, seed) cell of the label-efficiency curve not yet in
results.csv — classical models at every cut point and on pixels, fine-tuning at curve.depths
and scratch — then writes `report/curve.png` and `curve/summary.json` (see `curve.run`).
"""
import argparse
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m curve", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--budgets", default="", help="comma-separated labels per class")
    p.add_argument("--seeds", default="", help="comma-separated seeds")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from cutpoint import config
    from cutpoint.runlock import run_lock
    from curve.run import run_curve
    ints = lambda s: [int(x) for x in s.split(",") if x.strip()] or None  # noqa: E731
    try:
        cfg = config.load(args.config)
        with run_lock(args.run_dir, "curve"):
            summary = run_curve(cfg, args.run_dir, ints(args.budgets), ints(args.seeds),
                                progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as e:   # RunLockedError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    for sentence in summary["crossings"]:
        print(sentence)
    print(f"figure: {summary['figure']} ({summary['new_rows']} new rows, {summary['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
