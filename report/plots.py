"""The report's figures: each function draws one PNG a person can open and returns its path.

Pure drawing: inputs are arrays and results rows, never files to parse, so the figures can be
tested on synthetic numbers. The Agg backend is forced because reports are built headless
(Make, CI, a cluster node) where an interactive backend would fail or pop up windows.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 110
STAGE_COLORS = {"classical": "tab:blue", "finetune": "tab:red", "scratch": "tab:gray"}


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def _yerr(rows):
    """Asymmetric error bars from the bootstrap CI; 0 where a row has no CI."""
    lo = [r["accuracy"] - r["acc_ci_low"] if r.get("acc_ci_low") is not None else 0 for r in rows]
    hi = [r["acc_ci_high"] - r["accuracy"] if r.get("acc_ci_high") is not None else 0 for r in rows]
    return np.clip([lo, hi], 0, None)


def accuracy_vs_depth(rows, path, title="Test accuracy vs frozen blocks (Yosinski et al. 2014)"):
    """x = blocks transferred and kept frozen (n), y = test accuracy with 95 % CI.

    One line per classical model across cut points (frozen features), one for fine-tuning across
    depths, scratch as a horizontal line with its CI as a band. Where several rows share a point
    (e.g. two poolings) the one with the best VALIDATION accuracy is drawn (never chosen by test).
    """
    fig, ax = plt.subplots(figsize=(8, 5))
    placed = [r for r in rows if r.get("frozen_blocks") is not None]
    classical = [r for r in placed if r["stage"] == "classical"]
    backbones = {r.get("backbone") for r in classical}
    lines: dict = {}
    for r in classical:
        key = r.get("classifier") or r.get("method")
        if len(backbones) > 1:
            key = f"{r.get('backbone')} · {key}"
        lines.setdefault(key, {})
        best = lines[key].get(r["frozen_blocks"])
        if best is None or (r.get("val_accuracy") or -1) > (best.get("val_accuracy") or -1):
            lines[key][r["frozen_blocks"]] = r
    markers = "osD^v<>pP*X"
    for i, (name, points) in enumerate(sorted(lines.items())):
        pts = [points[n] for n in sorted(points)]
        ax.errorbar([p["frozen_blocks"] for p in pts], [p["accuracy"] for p in pts],
                    yerr=_yerr(pts), marker=markers[i % len(markers)], capsize=3, lw=1.2,
                    alpha=0.85, label=f"frozen + {name}")
    ft = sorted((r for r in placed if r["stage"] == "finetune"), key=lambda r: r["frozen_blocks"])
    if ft:
        ax.errorbar([r["frozen_blocks"] for r in ft], [r["accuracy"] for r in ft], yerr=_yerr(ft),
                    color=STAGE_COLORS["finetune"], marker="s", lw=2.5, capsize=4,
                    label="fine-tuned (top blocks unfrozen)")
    scratch = [r for r in rows if r["stage"] == "scratch"]
    if scratch:
        s = max(scratch, key=lambda r: r.get("val_accuracy") or -1)
        ax.axhline(s["accuracy"], color=STAGE_COLORS["scratch"], ls="--", lw=2,
                   label=f"from scratch ({s['accuracy']:.3f})")
        if s.get("acc_ci_low") is not None and s.get("acc_ci_high") is not None:
            ax.axhspan(s["acc_ci_low"], s["acc_ci_high"], color=STAGE_COLORS["scratch"], alpha=0.15)
    xs = sorted({r["frozen_blocks"] for r in rows if r.get("frozen_blocks") is not None})
    if xs:
        ax.set_xticks(xs)
    ax.set_xlabel("frozen blocks n (backbone blocks transferred and kept frozen)")
    ax.set_ylabel("test accuracy (95 % bootstrap CI)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # off the curves
    else:
        ax.text(0.5, 0.5, "no rows with a frozen-block count", ha="center", transform=ax.transAxes)
    return _save(fig, path)


def cost(rows, path, title="Accuracy vs training cost"):
    """Accuracy against fit wall time (log x); marker area ~ trainable parameters where known."""
    fig, ax = plt.subplots(figsize=(8, 5))
    timed = [r for r in rows if r.get("fit_seconds") and r["fit_seconds"] > 0]
    params = [r["trainable_params"] for r in timed if r.get("trainable_params")]
    pmax = max(params) if params else 1
    for stage in ("classical", "finetune", "scratch"):
        sel = [r for r in timed if r["stage"] == stage]
        if not sel:
            continue
        sizes = [30 + 570 * math.sqrt(r["trainable_params"] / pmax) if r.get("trainable_params")
                 else 25 for r in sel]
        label = {"classical": "frozen features + classical model", "finetune": "fine-tuned",
                 "scratch": "from scratch"}[stage]
        if not any(r.get("trainable_params") for r in sel):
            label += " (parameters not recorded)"
        ax.scatter([r["fit_seconds"] for r in sel], [r["accuracy"] for r in sel], s=sizes,
                   color=STAGE_COLORS[stage], alpha=0.6, edgecolor="black", lw=0.5, label=label)
    best = sorted(timed, key=lambda r: -(r.get("val_accuracy") or -1))[:5]   # by validation
    for r in best:
        ax.annotate(_short(r), (r["fit_seconds"], r["accuracy"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("fit wall time (s, log scale)")
    ax.set_ylabel("test accuracy")
    if params:
        title += f"\nmarker area ~ trainable parameters (largest {pmax:,})"
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    if timed:
        legend = ax.legend(fontsize=8, loc="lower right")
        for handle in legend.legend_handles:  # legend markers at one size: size means params
            handle.set_sizes([40])
    else:
        ax.text(0.5, 0.5, "no rows with a fit time", ha="center", transform=ax.transAxes)
    return _save(fig, path)


def _short(r) -> str:
    if r["stage"] == "classical":
        return f"{r.get('classifier')}@{r.get('cut')}"
    if r["stage"] == "finetune":
        return f"ft k={r.get('depth')}"
    return "scratch"


def confusion(y_true, y_pred, labels, names, path, title):
    """Row-normalised confusion matrix (colour) with raw counts written in each cell."""
    labels = list(labels)
    index = {v: i for i, v in enumerate(labels)}
    k = len(labels)
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(y_true, y_pred):
        if t in index and p in index:
            cm[index[t], index[p]] += 1
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(4.5, 0.6 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def per_class_f1(scores: dict, names, path, title="Per-class F1 of the best models"):
    """Grouped bars: one group per class, one bar per model (`scores`: label → F1 array)."""
    k = len(names)
    fig, ax = plt.subplots(figsize=(max(7, 0.7 * k * max(1, len(scores)) / 2 + 3), 4.5))
    width = 0.8 / max(1, len(scores))
    for i, (label, f1) in enumerate(scores.items()):
        ax.bar(np.arange(k) + (i - (len(scores) - 1) / 2) * width, f1, width, label=label)
    ax.set_xticks(range(k), names, rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("class")
    ax.set_ylabel("F1 on the test split")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def gallery(images, captions, path, title, ncols=8, wrong=None):
    """A grid of images with a caption over each (true, predicted, probability); captions of
    misclassified images (`wrong`) are red."""
    images = np.asarray(images)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.7 * ncols, 2.1 * nrows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    wrong = np.zeros(n, bool) if wrong is None else np.asarray(wrong, bool)
    for ax, img, cap, bad in zip(axes.flat, images, captions, wrong):
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(cap, fontsize=7, color="tab:red" if bad else "black")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def umap_scatter(coords, y, labels, names, path, title, mistakes=None):
    """2-D embedding coloured by class (legend with class names); mistakes as black crosses."""
    coords = np.asarray(coords)
    fig, ax = plt.subplots(figsize=(8, 7))
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    size = float(np.clip(3000 / max(len(coords), 1), 0.5, 25))
    for i, (lab, name) in enumerate(zip(labels, names)):
        sel = y == lab
        if not sel.any():  # keep colours stable across pictures: index by class, skip absent ones
            continue
        ax.scatter(coords[sel, 0], coords[sel, 1], s=size, color=cmap(i % cmap.N), alpha=0.7,
                   lw=0, label=f"{name} ({int(sel.sum())})", rasterized=True)
    if mistakes is not None and mistakes.any():
        ax.scatter(coords[mistakes, 0], coords[mistakes, 1], s=max(size * 2, 12), marker="x",
                   color="black", lw=0.8, label=f"misclassified ({int(mistakes.sum())})")
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, markerscale=max(1, 6 / math.sqrt(size)), loc="center left",
              bbox_to_anchor=(1.01, 0.5), title="class")
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, path)
