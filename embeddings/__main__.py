"""`python -m embeddings info FILE` | `python -m embeddings join OUT SHARD… [--overwrite]`

Inspect a store, or join the shards written by the workers of a distributed extraction.
Errors print one line and exit with code 2 (no traceback).
"""
import argparse
import sys

from embeddings import store


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m embeddings", description=__doc__.split("\n")[2])
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("info", help="describe a store: samples, splits, classes, cuts, provenance")
    i.add_argument("file")
    j = sub.add_parser("join", help="concatenate complete shards into one store")
    j.add_argument("out")
    j.add_argument("shards", nargs="+")
    j.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    args = p.parse_args(argv)
    try:
        if args.cmd == "info":
            print(store.info(args.file))
        else:
            store.join_shards(args.shards, args.out, overwrite=args.overwrite)
            print(f"joined {len(args.shards)} shard(s) into {args.out}")
    except store.StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
