"""`python -m report umap|build --config runs/<exp>/config.toml --run-dir runs/<exp>`

umap       2-D UMAP of every cut point's embeddings (stored in the HDF5 store) + one PNG each.
build      report/report.md (+ report.html and the PNGs) from results.csv, predictions and UMAP.
projector  TSV vectors + metadata of one cut for TensorBoard's projector (--cut, --split).
Errors print one line and exit with code 2 (no traceback).
"""
import argparse
import contextlib
import os
import sys

from cutpoint import runfolder as rf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m report", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, text in (("umap", "UMAP pictures of every cut point"),
                       ("build", "write report/report.md from the run folder"),
                       ("projector", "export one cut for TensorBoard's projector")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--config", default=None, help="resolved config (runs/<exp>/config.toml)")
        s.add_argument("--run-dir", default=None, help="run folder (default runs/<experiment>)")
        s.add_argument("--set", dest="sets", action="append", default=[],
                       metavar="SECTION.KEY=VALUE")
        if name == "projector":
            s.add_argument("--cut", required=True)
            s.add_argument("--split", default="test")
            s.add_argument("--store", default="embeddings", help="embeddings | pixels")
    args = p.parse_args(argv)
    from cutpoint import config
    from cutpoint.runlock import run_lock
    held = contextlib.ExitStack()   # the run folder's lock, taken once the folder is known
    try:
        cfg = config.load(args.config, args.sets)
        run_dir = args.run_dir or os.path.join("runs", cfg["experiment"]["name"])
        if not os.path.isdir(run_dir):
            raise FileNotFoundError(f"Run folder {run_dir!r} does not exist. Run `make extract` "
                                    f"and `make classify` first, or pass the right --run-dir.")
        held.enter_context(run_lock(run_dir, f"report {args.cmd}"))
        if args.cmd == "umap":
            from report.umap_stage import run_umap
            summary = run_umap(run_dir, cfg)
            done = sum(e["computed"] for e in summary["entries"])
            print(f"UMAP: {done} computed, {len(summary['entries']) - done} up to date; "
                  f"pictures in {os.path.join(run_dir, rf.REPORT)}")
        elif args.cmd == "projector":
            from report.umap_stage import export_projector
            vec, meta = export_projector(run_dir, args.cut, args.split, args.store)
            print(f"projector files: {vec} {meta}")
        else:
            if not rf.results_csv(run_dir).is_file():
                raise FileNotFoundError(
                    f"No results table at {rf.results_csv(run_dir)}. Run `make "
                    f"classify` first (and `make finetune` for the fine-tuned baselines).")
            from report.build import build_report
            print(f"report: {build_report(run_dir, cfg)}")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        held.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
