"""`python -m benchmarks [--quick] [--only SECTION,...] [--e2e] [--out benchmarks/]`.

Runs the sections in order, each timed and isolated: an exception is recorded (message and
traceback) in its section and the others still run. results.json and results.md are rewritten
after every section, so an interrupted run keeps what it measured.
"""
from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
import time
import traceback
from datetime import datetime, timezone

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

SECTIONS = ("peak", "extraction", "resize", "depthwise", "sweep", "memory", "hdf5", "classical",
            "classical_wide", "scale", "e2e")
_MODULES = {"peak": "peak", "extraction": "extraction", "resize": "resize",
            "depthwise": "depthwise", "sweep": "sweep", "memory": "memory",
            "hdf5": "storage", "classical": "classifiers", "classical_wide": "classical_wide",
            "scale": "scale", "e2e": "e2e"}


def parse_only(text):
    if not text:
        return list(SECTIONS)
    names = [s.strip() for s in text.split(",") if s.strip()]
    for n in names:
        if n not in SECTIONS:
            match = difflib.get_close_matches(n, SECTIONS, n=1)
            hint = f" Did you mean '{match[0]}'?" if match else ""
            raise ValueError(f"Unknown benchmark section {n!r} in --only. Available: "
                             f"{', '.join(SECTIONS)}.{hint}")
    # Extraction is judged against the matmul peak measured in the same run.
    if {"extraction", "resize", "depthwise", "e2e"} & set(names) and "peak" not in names:
        names.insert(0, "peak")
    return [s for s in SECTIONS if s in names]


def run_section(name, sizes, ctx) -> dict:
    import importlib
    t0 = time.perf_counter()
    try:
        module = importlib.import_module(f"benchmarks.{_MODULES[name]}")
        out = module.run(sizes[name], ctx)
        out.setdefault("status", "ok")
    except Exception as e:  # noqa: BLE001  (a failed section must not lose the others)
        out = {"status": "error", "error": f"{type(e).__name__}: {e}"[:2000],
               "traceback": traceback.format_exc()[-6000:]}
    out["seconds"] = time.perf_counter() - t0
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test, seconds)")
    p.add_argument("--only", default="", help=f"comma-separated sections: {','.join(SECTIONS)}")
    p.add_argument("--e2e", action="store_true",
                   help="run `make extract` and `make classify` for real (~20 min)")
    p.add_argument("--e2e-run", default="",
                   help="with --e2e: run into this new folder (e.g. runs/default) and keep it, "
                        "instead of a temporary one")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__)),
                   help="folder for results.json and results.md (default: benchmarks/)")
    args = p.parse_args(argv)
    try:
        names = parse_only(args.only)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from benchmarks import render, sizes as sizes_mod
    from benchmarks.common import machine

    sizes = sizes_mod.get(args.quick)
    ctx = {"e2e": args.e2e, "e2e_run": args.e2e_run, "quick": args.quick}
    res = {"schema": 1, "mode": "quick" if args.quick else "full", "e2e": args.e2e,
           "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "seconds": 0.0, "machine": machine(), "sizes": {n: sizes[n] for n in names},
           "sections": {}, "targets": []}
    t0 = time.perf_counter()
    for name in names:
        print(f"[bench] {name} …", file=sys.stderr, flush=True)
        sec = run_section(name, sizes, ctx)
        res["targets"] += sec.pop("targets", [])
        res["sections"][name] = sec
        res["seconds"] = time.perf_counter() - t0
        state = sec["status"] if sec["status"] != "error" else f"FAILED: {sec['error']}"
        print(f"[bench] {name}: {state} ({sec['seconds']:.1f} s)", file=sys.stderr, flush=True)
        json_path, md_path = render.write(res, args.out)
    print(f"wrote {json_path} and {md_path}")
    failed = [n for n, s in res["sections"].items() if s["status"] == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
