"""The label-efficiency curve's aggregation, figure and sentences (BRIEF §13).

Method families, one line each: the frozen backbone (at every budget and seed, the cut point and
classifier with the best SELECTION score inside the budget — never test), raw pixels (the best
classifier the same way), fine-tuning at each depth, and scratch. Per family and budget: mean,
std, min, max and a 95 % t-interval over seeds (scipy). With one label per class there is no
selection score: the frozen family then uses logistic regression at the deepest cut, and pixels
logistic regression — a choice declared here, before any data is seen.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from cutpoint import results
from cutpoint import runfolder as rf
from report.tables import on_pixels

FROZEN, PIXELS, SCRATCH = "frozen (selected cut + classifier)", "raw pixels (selected classifier)", \
    "scratch"
FALLBACK_CLASSIFIER = "logreg"


def family(r) -> str | None:
    if r["stage"] == "classical":
        return PIXELS if on_pixels(r) else FROZEN
    if r["stage"] == "scratch":
        return SCRATCH
    if r["stage"] == "finetune":
        return f"fine-tune k={r.get('depth')}"
    return None


def _pick(cands: list) -> dict:
    """The selection-chosen row of a family at one (budget, seed)."""
    scored = [r for r in cands if r.get("val_accuracy") is not None]
    if scored:
        return min(scored, key=results.rank_key)
    pre = [r for r in cands if r.get("classifier") == FALLBACK_CLASSIFIER] or cands
    return max(pre, key=lambda r: r.get("frozen_blocks") or 0)   # the deepest cut


def cells(rows) -> dict:
    """{family: {budget: {seed: chosen row}}} from curve rows (labels_per_class > 0)."""
    groups: dict = defaultdict(list)
    for r in rows:
        f = family(r)
        if f and (r.get("labels_per_class") or 0) > 0 and r.get("accuracy") is not None:
            groups[(f, r["labels_per_class"], r["seed"])].append(r)
    out: dict = defaultdict(lambda: defaultdict(dict))
    for (f, b, s), cands in groups.items():
        out[f][b][s] = _pick(cands)
    return out


def stats(values) -> dict:
    """Mean, std (ddof 1), min, max and a 95 % t-interval over seeds."""
    from scipy import stats as st
    v = np.asarray(values, dtype=float)
    n = len(v)
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    half = float(st.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else float("nan")
    return {"n": n, "mean": mean, "std": std, "min": float(v.min()), "max": float(v.max()),
            "ci_low": mean - half, "ci_high": mean + half}


def aggregate(rows) -> dict:
    """{family: {budget: stats + the chosen configurations}}."""
    agg: dict = {}
    for f, by_b in cells(rows).items():
        agg[f] = {}
        for b, by_s in sorted(by_b.items()):
            chosen = [by_s[s] for s in sorted(by_s)]
            agg[f][b] = stats([r["accuracy"] for r in chosen]) | {
                "seeds": sorted(by_s),
                "chosen": [f"{r.get('cut')}+{r.get('classifier')}" if r["stage"] == "classical"
                           else r["method"] for r in chosen]}
    return agg


def _order(families) -> list:
    depth = sorted((f for f in families if f.startswith("fine-tune")),
                   key=lambda f: (f != "fine-tune k=all", f))
    return [f for f in (FROZEN, PIXELS) if f in families] + depth + \
        ([SCRATCH] if SCRATCH in families else [])


def crossings(agg) -> list[str]:
    """One sentence per pair of lines: where the mean of A is above B's, budget by budget."""
    fams = _order(agg)
    depths = [f for f in fams if f.startswith("fine-tune")]
    pairs = [(FROZEN, d) for d in depths] + [(d, SCRATCH) for d in depths] + [(FROZEN, PIXELS)]
    out = []
    for a, b in pairs:
        if a not in agg or b not in agg:
            continue
        common = sorted(set(agg[a]) & set(agg[b]))
        if not common:
            continue
        wins = [x for x in common if agg[a][x]["mean"] > agg[b][x]["mean"]]
        name_a = _short(a, agg)
        if len(wins) == len(common):
            out.append(f"{name_a} is above {b} at every budget ({_list(common)} labels per class).")
        elif not wins:
            out.append(f"{b} is above {name_a} at every budget ({_list(common)} labels per class).")
        else:
            below = [x for x in common if x not in wins]
            if max(wins) < min(below):
                out.append(f"{name_a} beats {b} up to {max(wins)} labels per class; from "
                           f"{min(below)} on, {b} is ahead.")
            elif max(below) < min(wins):
                out.append(f"{b} is ahead of {name_a} up to {max(below)} labels per class; from "
                           f"{min(wins)} on, {name_a} beats it.")
            else:
                out.append(f"{name_a} is above {b} at {_list(wins)} and below at {_list(below)} "
                           f"labels per class (the lines cross more than once).")
    return out


def _list(xs) -> str:
    return ", ".join(str(x) for x in xs)


def _short(f, agg) -> str:
    if f != FROZEN:
        return f
    chosen = [c for st in agg[f].values() for c in st["chosen"]]
    top = max(set(chosen), key=chosen.count) if chosen else ""
    return f"frozen features (most often {top.replace('+', ' + ')})"


def plot(agg, path, title) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {FROZEN: ("tab:blue", "o", "-"), PIXELS: ("tab:gray", "x", ":"),
              SCRATCH: ("tab:red", "s", "--")}
    depth_colors = iter(["tab:green", "tab:olive", "tab:cyan", "tab:purple", "tab:brown",
                         "tab:pink"])
    for f in _order(agg):
        color, marker, ls = styles.get(f) or (next(depth_colors), "D", "-")
        bs = sorted(agg[f])
        mean = np.array([agg[f][b]["mean"] for b in bs])
        std = np.array([agg[f][b]["std"] for b in bs])
        n = max(agg[f][b]["n"] for b in bs)
        ax.plot(bs, mean, color=color, marker=marker, ls=ls, lw=2, label=f"{f} (n={n} seeds)")
        ax.fill_between(bs, mean - std, mean + std, color=color, alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("labels per class (log scale)")
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(agg) -> str:
    fams = _order(agg)
    budgets = sorted({b for f in fams for b in agg[f]})
    lines = ["| family | " + " | ".join(f"b={b}" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for f in fams:
        cells_ = []
        for b in budgets:
            st = agg[f].get(b)
            cells_.append("–" if st is None else
                          f"{st['mean']:.4f} ± {st['std']:.4f} [{st['min']:.4f}, {st['max']:.4f}]"
                          + ("" if math.isnan(st["ci_low"]) else
                             f" CI [{st['ci_low']:.4f}, {st['ci_high']:.4f}]"))
        lines.append(f"| {f} | " + " | ".join(cells_) + " |")
    return "\n".join(lines)


def section(run_dir, cfg) -> list[str]:
    """The curve's Markdown section for the report (empty when no curve rows exist)."""
    rows = results.curve_rows(results.read(rf.results_csv(run_dir)), cfg)
    agg = aggregate(rows)
    if not agg:
        return ["## How the answer changes with labels", "",
                "No label-efficiency curve yet: run `make curve`.", ""]
    md = ["## How the answer changes with labels", "",
          f"Selection rule: {rule(cfg['curve'])}. Every method of a (budget, seed) cell trains on "
          f"the same labelled subset (recorded in `curve/subsets.npz`, nested across budgets); "
          f"the test split is the experiment's. Lines: mean test accuracy over seeds, bands ± "
          f"one std. The frozen line takes, at each budget and seed, the cut point and "
          f"classifier with the best selection score (with one label per class: logistic "
          f"regression at the deepest cut, declared in advance).", "",
          "![label-efficiency curve](curve.png)", "",
          "Mean ± std [min, max] and 95 % t-interval over seeds:", "", table(agg), ""]
    md += [" ".join(crossings(agg)), ""]
    return md


def rule(c: dict) -> str:
    return (f"labels inside the budget only — with at least {c['holdout_min']} labels per "
            f"class, hyperparameters (C, trees, learning rate, epochs …) are chosen on a held-out "
            f"{c['holdout_fraction']:.0%} of the subset; with 2–{c['holdout_min'] - 1}, the "
            f"classical models and the k = 0 probe use {c['cv_folds']}-fold (at most b-fold) "
            f"stratified cross-validation inside it, while fine-tuning (k ≥ 1) and scratch use "
            f"settings declared in advance (the middle learning-rate candidate, "
            f"finetune.epochs epochs); with 1, declared settings everywhere. Classical models "
            f"and the probe refit on the whole subset, fine-tuning trains on the part not held "
            f"out; the experiment's full validation split is never used")


def write_curve(run_dir, cfg) -> dict:
    """Write `report/curve.png` and `curve/summary.json`; returns the summary."""
    run_dir = Path(run_dir)
    rows = results.curve_rows(results.read(rf.results_csv(run_dir)), cfg)
    agg = aggregate(rows)
    if not agg:
        raise FileNotFoundError(f"No curve rows in {rf.results_csv(run_dir)}: run `make curve`.")
    plot(agg, run_dir / rf.REPORT / "curve.png",
         f"{cfg['experiment']['name']}: test accuracy vs labels per class "
         f"({cfg['backbone']['name']}, {cfg['dataset']['name']})")
    summary = {"families": {f: {str(b): st for b, st in v.items()} for f, v in agg.items()},
               "crossings": crossings(agg), "rule": rule(cfg["curve"]),
               "figure": str(run_dir / rf.REPORT / "curve.png")}
    (run_dir / rf.CURVE).mkdir(parents=True, exist_ok=True)
    (run_dir / rf.CURVE / rf.CURVE_SUMMARY).write_text(json.dumps(summary, indent=1))
    return summary
