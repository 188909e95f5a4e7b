"""`python -m cutpoint resolve --config F [--set s.k=v …] --out runs/<exp>/config.toml`
`python -m cutpoint archive --config runs/<exp>/config.toml --run-dir runs/<exp>`

`resolve` resolves a config (defaults ← file ← overrides) and writes it only when it changed;
with `--stamps DIR` it also writes DIR/<stage>.toml, the sections each stage reads
(`config.STAGE_SECTIONS`), each only when it changed: the Makefile's targets depend on their
stage's file, so a stage re-runs exactly when what it reads changed. `archive`
moves the results rows of other experiments (older protocol, other seed or splits) from
results.csv to results-archive.csv: kept, never compared.
"""
import argparse
import sys

from cutpoint import config
from cutpoint import runfolder as rf


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m cutpoint")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("resolve", help="resolve a config and write it if it changed")
    r.add_argument("--config", default=None)
    r.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE")
    r.add_argument("--out", required=True)
    r.add_argument("--stamps", default=None, metavar="DIR",
                   help="also write DIR/<stage>.toml: the sections each stage reads")
    a = sub.add_parser("archive", help="move other experiments' rows to results-archive.csv")
    a.add_argument("--config", required=True)
    a.add_argument("--run-dir", required=True)
    args = p.parse_args(argv)
    try:
        cfg = config.load(args.config, getattr(args, "sets", []))
    except config.ConfigError as e:
        sys.exit(f"error: {e}")
    if args.cmd == "archive":
        from pathlib import Path

        from cutpoint import results
        moved, dest = results.archive(rf.results_csv(args.run_dir), cfg)
        print(f"{moved} row(s) of other experiments moved to {dest}")
        return
    changed = config.write_if_changed(args.out, config.to_toml(cfg))
    print(f"config {'updated' if changed else 'unchanged'}: {args.out}")
    if args.stamps:
        from pathlib import Path
        stages = [st for st in config.STAGE_SECTIONS if config.write_if_changed(
            Path(args.stamps) / f"{st}.toml", config.to_toml(config.stage_view(cfg, st)))]
        if stages and not changed:
            print(f"stage settings updated: {', '.join(stages)}")


if __name__ == "__main__":
    main()
