"""Classical models on stored embeddings: the command line.

    python -m classical --list
    python -m classical run --config runs/<exp>/config.toml --run-dir runs/<exp>
                            [--classifiers logreg,knn] [--cuts block2,pixels]
                            [--workers N | --scheduler tcp://host:8786]

`run` trains every (store, cut, classifier) not yet in `run-dir/results.csv`: the backbone's
cuts in `embeddings.h5` and the raw-pixel pseudo-backbone in `pixels.h5` (when present); see
`classical.runner`. A failing run is reported with its reason and the exit code is 1, so
`make classify` retries. A saved model is applied with `python -m predict`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from classical import pipelines, runner
# Library functions older callers import from here (tests/test_classical_dask.py): the stage's
# `run` and predicting one split of a store with a saved model.
from classical.bundle import predict_store as predict  # noqa: F401
from classical.runner import run  # noqa: F401


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m classical", description=__doc__.split("\n\n")[0],
                                epilog="To apply a saved model: python -m predict --help")
    p.add_argument("--list", action="store_true", help="describe the registered pipelines")
    sub = p.add_subparsers(dest="cmd")
    r = sub.add_parser("run", help="train/score every missing (store, cut, classifier)")
    r.add_argument("--config", required=True, help="resolved config (runs/<exp>/config.toml)")
    r.add_argument("--run-dir", required=True)
    r.add_argument("--classifiers", default="", help="comma-separated registry names")
    r.add_argument("--cuts", default="", help="comma-separated cut names (pixels included)")
    r.add_argument("--no-progress", action="store_true")
    dask = r.add_mutually_exclusive_group()
    dask.add_argument("--workers", type=int, default=0,
                      help="run on a Dask LocalCluster of N single-threaded worker processes")
    dask.add_argument("--scheduler", default="",
                      help="address of an existing Dask scheduler (dask-jobqueue, Kubernetes); "
                           "its workers must see the run folder")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.list:
        print(pipelines.describe())
        return 0
    if args.cmd is None:
        p.print_help()
        return 2
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    try:
        summary = runner.run_stage(args.config, args.run_dir, split(args.classifiers) or None,
                                   split(args.cuts) or None, progress=not args.no_progress,
                                   workers=args.workers, scheduler=args.scheduler)
    except (ValueError, FileNotFoundError) as e:   # user-input errors: the message is the fix
        print(f"error: {e}", file=sys.stderr)
        return 2
    if summary["failed"]:
        print(runner.failure_report(summary, Path(args.run_dir)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
