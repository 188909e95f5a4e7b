"""Apply a saved classical model (`classical/<run_id>/model.joblib`) to new data:

    python -m predict --model runs/<exp>/classical/<run_id>/model.joblib \
                      (--images DIR|FILE…|NPZ | --store S.h5 [--split test]) --out preds.csv

Errors print one line and exit with code 2; files that could not be decoded are listed in
`<out>.skipped.csv` and counted on stderr.
"""
from __future__ import annotations

import argparse
import logging
import sys

import predict as service


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m predict", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a model.joblib saved by `python -m classical`")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", help="an embedding store extracted like the model's")
    src.add_argument("--images", nargs="+",
                     help="new images: a folder of images (flat or not; unlabelled), image "
                          "files, or an .npz")
    p.add_argument("--split", default="test", help="the store's split to predict (--store)")
    p.add_argument("--out", required=True, help="the predictions CSV to write")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        n = service.predict(args.model, args.out, images=args.images, store=args.store,
                            split=args.split)
    except (ValueError, FileNotFoundError) as e:   # user-input errors: the message is the fix
        print(f"error: {e}", file=sys.stderr)
        return 2
    logging.getLogger("predict").info("%d predictions → %s", n, args.out)
    skipped = service.skipped_path(args.out)
    if args.images and skipped.exists():
        print(f"skipped {sum(1 for _ in open(skipped)) - 1} file(s) that could not be decoded: "
              f"listed in {skipped}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
