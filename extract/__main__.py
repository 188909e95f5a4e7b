"""`python -m extract` — embed a dataset at every cut point of a backbone (the extract stage).

  python -m extract --list                                   registry: cut points and widths
  python -m extract --config configs/default.toml [--run-dir runs/default] [--set k=v …]
  python -m extract … --workers 4                            shard over Dask workers
"""
import argparse
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m extract", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", action="store_true", help="list the backbone registry and exit")
    p.add_argument("--config", default=None, help="experiment TOML (default: built-in defaults)")
    p.add_argument("--run-dir", default=None, help="output folder (default: runs/<experiment>)")
    p.add_argument("--workers", type=int, default=0,
                   help="shard the rows over N Dask worker processes (LocalCluster)")
    p.add_argument("--scheduler", default="", help="address of an existing Dask scheduler")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.list:
            from backbones.cut import describe_registry
            print(describe_registry())
            return 0
        from cutpoint import config
        from cutpoint.runlock import run_lock
        from extract.extractor import extract
        cfg = config.load(args.config, args.sets)
        run_dir = args.run_dir or os.path.join("runs", cfg["experiment"]["name"])
        with run_lock(run_dir, "extract"):
            summary = extract(cfg, run_dir, workers=args.workers, scheduler=args.scheduler)
    except ValueError as e:  # user input: config, dataset, weights, cut names, store
        print(f"error: {e}", file=sys.stderr)
        return 2
    cuts = ", ".join(f"{a}({m['width']})" for a, m in summary["cuts"].items())
    state = "up to date" if summary["skipped"] else (
        f"{summary['rows']} rows in {summary['seconds']} s ({summary['images_per_second']} img/s)")
    print(f"{summary['store']}: {state}; cuts {cuts}")
    if summary.get("skipped_files"):
        print(f"skipped {summary['skipped_files']} unreadable file(s), excluded from every stage: "
              f"listed with the reason in {summary['skipped_report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
