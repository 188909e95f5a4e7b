"""The side-by-side report (BRIEF §8): `build_report(run_dir, cfg)` → ``report/report.md``.

Everything comes from files the other stages left in the run folder: the results table, each
run's test predictions (.npz), the embedding store's class names and the UMAP summary. A missing
piece (no fine-tuning yet, no UMAP, a dataset that can't be loaded for the galleries) becomes a
sentence in the report saying what to run, never a failure: a half-finished experiment is still
worth reading.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from cutpoint import results
from cutpoint.provenance import code_version
from report import plots

GOOD_WITHIN = 0.01   # "cheapest good option": within 1 accuracy point of the best
ALPHA = 0.05


# ----------------------------------------------------------------------------- inputs

@dataclass
class Predictions:
    ids: np.ndarray          # str
    y_true: np.ndarray       # int labels (indices into the class names)
    y_pred: np.ndarray
    proba: np.ndarray | None  # (n, K) columns in `labels` order, or None
    labels: np.ndarray       # label of each proba column

    def confidence(self):
        """Probability given to the predicted class, and the top-1 minus top-2 margin."""
        col = {int(v): j for j, v in enumerate(self.labels)}
        j = np.array([col.get(int(p), -1) for p in self.y_pred])
        p_pred = np.where(j >= 0, self.proba[np.arange(len(j)), np.maximum(j, 0)], np.nan)
        top = np.sort(self.proba, axis=1)
        margin = top[:, -1] - (top[:, -2] if top.shape[1] > 1 else 0)
        return p_pred, margin


def load_predictions(run_dir, row, class_names=()) -> Predictions | None:
    """A row's saved test predictions, or None when it has none / the file is gone."""
    if not row.get("predictions"):
        return None
    path = Path(run_dir) / row["predictions"]
    if not path.is_file():
        return None
    try:
        z = np.load(path, allow_pickle=False)
        arrays = {k: z[k] for k in z.files}
    except ValueError:  # object arrays (ids saved from a list of str): our own file, so allowed
        z = np.load(path, allow_pickle=True)
        arrays = {k: z[k] for k in z.files}
    proba = arrays.get("proba")
    if proba is not None and proba.ndim == 2 and proba.shape[1]:
        proba = proba.astype(np.float64)
    else:
        proba = None  # (n, 0): the model gives no probabilities (e.g. a linear SVM)
    classes = np.asarray(arrays.get("classes", []))
    names = list(class_names)
    if proba is None:
        labels = np.asarray(classes if classes.dtype.kind in "iu" else [], dtype=int)
    elif classes.dtype.kind in "iu" and len(classes) == proba.shape[1]:
        labels = classes.astype(int)
    elif len(classes) == proba.shape[1] and names and all(str(c) in names for c in classes):
        labels = np.array([names.index(str(c)) for c in classes])
    else:
        labels = np.arange(proba.shape[1])
    return Predictions(np.asarray(arrays["ids"]).astype(str),
                       np.asarray(arrays["y_true"]).astype(int),
                       np.asarray(arrays["y_pred"]).astype(int), proba, labels)


def class_names_of(run_dir, rows) -> list:
    """Class names from the embedding store, else from a predictions file, else none."""
    path = Path(run_dir) / "embeddings.h5"
    if path.is_file():
        try:
            from embeddings import store
            return store.class_names(path)
        except (ValueError, OSError):
            pass
    for r in rows:
        p = Path(run_dir) / (r.get("predictions") or "-")
        if p.is_file():
            with np.load(p, allow_pickle=True) as z:
                if "classes" in z.files and z["classes"].dtype.kind in "UO":
                    return [str(c) for c in z["classes"]]
    return []


def dataset_images(cfg) -> Callable:
    """`images_for_ids` backed by the configured dataset (raises if it cannot be loaded)."""
    from cutpoint.splits import prepare
    target = prepare(cfg)["target"]
    pos = {str(i): k for k, i in enumerate(target.ids)}

    def images_for_ids(ids):
        missing = [i for i in ids if str(i) not in pos]
        if missing:
            raise KeyError(f"{len(missing)} ids (e.g. {missing[0]!r}) are not in the dataset.")
        return target.images(np.array([pos[str(i)] for i in ids]))
    return images_for_ids


# ----------------------------------------------------------------------------- formatting

def f4(x) -> str:
    return "–" if x is None else f"{x:.4f}"


def fsec(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def fint(x) -> str:
    return "–" if x is None else f"{int(x):,}"


def fp(p) -> str:
    return "< 1e-300" if p < 1e-300 else f"{p:.3g}"


def describe(r) -> str:
    """A short human name for a row: what was trained, where."""
    n = r.get("frozen_blocks")
    if r["stage"] == "classical":
        clf = r.get("classifier") or r["method"]
        return (f"{clf} on raw pixels" if r.get("cut") == "pixels"
                else f"{clf} on frozen {r.get('cut')} features (n={n})")
    if r["stage"] == "finetune":
        k = str(r.get("depth"))
        if k == "0":
            return f"a new head on the frozen backbone (k=0, n={n})"
        if k == "all" or n == 0:
            return f"fine-tuned end to end (k={k}, n={n})"
        return f"fine-tuned with the top {k} block(s) unfrozen (k={k}, n={n})"
    return "trained from scratch"


_sort_key = results.rank_key   # best first by validation accuracy (never test), ties declared


def results_table(rows) -> str:
    """Markdown table sorted by validation accuracy (the selection score), with the training
    rows and the selection rule of every row (rules numbered under the table)."""
    head = ["#", "method", "stage", "backbone", "cut", "n", "val acc", "test accuracy",
            "95 % CI", "macro-F1", "log-loss", "train rows", "rule", "fit s", "predict s",
            "trainable params", "run_id"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rules: dict = {}
    for i, r in enumerate(sorted(rows, key=_sort_key), 1):
        ci = (f"[{f4(r['acc_ci_low'])}, {f4(r['acc_ci_high'])}]"
              if r.get("acc_ci_low") is not None and r.get("acc_ci_high") is not None else "–")
        n = "–" if r.get("frozen_blocks") is None else str(r["frozen_blocks"])
        rule = rules.setdefault(r.get("selection") or "not recorded", len(rules) + 1)
        subset = " (subset)" if "stratified subset" in (r.get("notes") or "") else ""
        cells = [str(i), r.get("method") or "", r["stage"], r.get("backbone") or "",
                 r.get("cut") or "–", n, f4(r.get("val_accuracy")), f4(r.get("accuracy")), ci,
                 f4(r.get("macro_f1")), f4(r.get("log_loss")), fint(r.get("n_train")) + subset,
                 f"[{rule}]", fsec(r.get("fit_seconds")), fsec(r.get("predict_seconds")),
                 fint(r.get("trainable_params")), r.get("run_id") or ""]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    lines.append("")
    lines += [f"[{k}] {rule}" + ("  " if k < len(rules) else "") for rule, k in rules.items()]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- analyses

def is_pixels(r) -> bool:
    return r.get("backbone") == "pixels" or r.get("cut") == "pixels"


def best_of(rows, stage, pixels=False):
    """The validation-chosen row of a stage (highest `val_accuracy`, never test accuracy);
    classical rows split into frozen features and the raw-pixel baseline. Rows without a
    validation score cannot be chosen."""
    cand = [r for r in rows if r["stage"] == stage and r.get("accuracy") is not None
            and r.get("val_accuracy") is not None
            and (stage != "classical" or is_pixels(r) == pixels)]
    return min(cand, key=_sort_key) if cand else None


def paired(a: Predictions, b: Predictions):
    """McNemar on the samples both models predicted, matched by id (never by row order)."""
    from cutpoint.metrics import mcnemar
    ib = {i: k for k, i in enumerate(b.ids)}
    ia = [k for k, i in enumerate(a.ids) if i in ib]
    jb = [ib[a.ids[k]] for k in ia]
    if not ia:
        return None, "the two runs share no test sample ids"
    if not np.array_equal(a.y_true[ia], b.y_true[jb]):
        return None, "the two runs disagree on the true labels of shared ids (different splits?)"
    out = mcnemar(a.y_true[ia], a.y_pred[ia], b.y_pred[jb])
    out["n"] = len(ia)
    return out, ""


def _names(labels, names):
    return [names[v] if 0 <= v < len(names) else str(v) for v in labels]


# ----------------------------------------------------------------------------- the report

def build_report(run_dir, cfg, images_for_ids: Callable | None = None, log=print) -> Path:
    """Write ``<run_dir>/report/report.md`` (+ .html and PNGs); returns the Markdown path.

    `images_for_ids(ids) -> uint8 array` supplies gallery images; by default the configured
    dataset is loaded, and if that fails the report says so and has no galleries.
    """
    run_dir = Path(run_dir)
    table = run_dir / "results.csv"
    every = [r for r in results.read(table) if r.get("accuracy") is not None]
    rows = results.comparable(every, cfg)
    if not rows:
        raise FileNotFoundError(
            f"No results of this experiment in {table} ({len(every)} rows of other experiments). "
            f"Run `make classify` (and `make finetune`) first, or pass the right --run-dir.")
    others = len(every) - len(rows) - len(results.curve_rows(every, cfg))   # other experiments,
    # or superseded definitions of a method (`results.latest`)
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    names = class_names_of(run_dir, rows)
    best = {s: best_of(rows, s) for s in ("classical", "finetune", "scratch")}
    best["pixels"] = best_of(rows, "classical", pixels=True)
    preds = {s: load_predictions(run_dir, r, names) for s, r in best.items() if r}

    title = f"cutpoint report — {cfg['experiment']['name']}"
    d = cfg["dataset"]
    md = [f"# {title}", "",
          f"Dataset `{d['name']}` (target classes {d['target_classes'] or 'all'}), "
          f"backbone `{cfg['backbone']['name']}` (weights `{cfg['backbone']['weights']}`), "
          f"seed {cfg['experiment']['seed']}, experiment `{results.experiment_id(cfg)}`: "
          f"{len(rows)} runs. Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by "
          f"cutpoint {code_version()}.", "",
          "**How winners are chosen.** Every \"best\" below (best frozen cut and classifier, best "
          "fine-tuning depth, best overall) is the row with the highest **validation** accuracy "
          "(`val_accuracy`, the score its own selection used); test accuracy is reported, never "
          "used to choose. The significance tests compare pairs fixed before test was read.", ""]
    if others:
        md += [f"{others} older row(s) in results.csv belong to other experiments (other splits, "
               f"seed, backbone, extraction or protocol version) or to a superseded definition "
               f"of a method (only each method's newest row is compared) and are not compared "
               f"here; `make archive-results` moves other experiments' rows to "
               f"results-archive.csv.", ""]
    tests = mcnemar_tests(rows, best, run_dir, names)
    md += ["## What it says", "", summary(rows, best, tests), ""]

    md += ["## Results", "",
           "Sorted by validation accuracy (the selection score). Test-split accuracy with its "
           "95 % bootstrap CI. *n* = backbone blocks transferred and kept frozen (Yosinski's n): "
           "the cut after block n for frozen features + a classical model; all blocks but the "
           "top k for fine-tuning at depth k; 0 from scratch. *train rows* = rows of the final "
           "fit (\"subset\": a stratified subset, see the run's notes); *rule* = how that row's "
           "hyperparameters / epochs were chosen.", "", results_table(rows), ""]

    plots.accuracy_vs_depth(rows, out / "accuracy_vs_depth.png")
    md += ["## Accuracy vs depth", "",
           "Frozen features (one line per classical model, across cut points) against fine-tuning "
           "with the top blocks unfrozen, and training from scratch (dashed, CI shaded).", "",
           "![accuracy vs depth](accuracy_vs_depth.png)", ""]
    if not best["finetune"]:
        md += ["No fine-tuning results yet: run `make finetune` to add the fine-tuning line.", ""]
    from report import curve as rcurve
    curve_md = rcurve.section(run_dir, cfg)
    if "curve.png" in "".join(curve_md):
        rcurve.write_curve(run_dir, cfg)     # the figure from the rows, always current
    md += curve_md
    plots.cost(rows, out / "cost.png")
    md += ["## Cost", "", "Accuracy against fit wall time (log scale); marker area grows with the "
           "number of trainable parameters where the stage recorded it.", "",
           "![cost](cost.png)", ""]

    md += mcnemar_section(best, tests)
    md += best_models_section(out, best, preds, names)
    md += galleries_section(out, cfg, best, preds, names, images_for_ids, log)
    md += umap_section(run_dir, out)

    path = out / "report.md"
    text = "\n".join(md).rstrip() + "\n"
    path.write_text(text)
    (out / "report.html").write_text(to_html(text, title))
    return path


def test_family(rows, best) -> list:
    """The pairs tested, fixed BEFORE test is read: the validation-chosen frozen model vs the
    validation-chosen fine-tuned one, the validation-chosen frozen model vs the raw-pixel
    baseline, and every fine-tuning depth vs scratch."""
    pairs = []
    if best.get("classical") and best.get("finetune"):
        pairs.append((best["classical"], best["finetune"]))
    if best.get("classical") and best.get("pixels"):
        pairs.append((best["classical"], best["pixels"]))
    if best.get("scratch"):
        depths = sorted((r for r in rows if r["stage"] == "finetune"
                         and r.get("val_accuracy") is not None), key=lambda r: r["frozen_blocks"]
                        if r.get("frozen_blocks") is not None else 0, reverse=True)
        pairs += [(r, best["scratch"]) for r in depths]
    return pairs


def mcnemar_tests(rows, best, run_dir, names) -> list:
    """(row A, row B, result or None, note) for each pair of `test_family`, with Holm-adjusted
    p-values (`p_holm`) over the tests that could be computed."""
    from cutpoint.metrics import holm
    cache: dict = {}

    def pred(r):
        if r["run_id"] not in cache:
            cache[r["run_id"]] = load_predictions(run_dir, r, names)
        return cache[r["run_id"]]

    tests = []
    for a, b in test_family(rows, best):
        pa, pb = pred(a), pred(b)
        res, note = (None, "predictions file missing") if pa is None or pb is None \
            else paired(pa, pb)
        tests.append((a, b, res, note))
    done = [t[2] for t in tests if t[2] is not None]
    adjusted, reject = holm([t["p_value"] for t in done], ALPHA)
    for t, p, rej in zip(done, adjusted, reject):
        t["p_holm"], t["reject"] = p, rej
    return tests


def mcnemar_section(best, tests) -> list:
    md = ["## Paired significance (McNemar, Holm-corrected)", "",
          "The pairs are fixed before test is read: the validation-chosen frozen model vs the "
          "validation-chosen fine-tuned one, the validation-chosen frozen model vs the raw-pixel "
          "baseline, and each fine-tuning depth vs scratch. Each pair is compared on the same "
          "test samples (matched by id): *b* = samples A gets right and B gets wrong, *c* = the "
          "reverse. Exact binomial test below 25 discordant pairs, else chi-square with "
          "continuity correction (statsmodels); p-values Holm-adjusted over the whole family.",
          ""]
    if not tests:
        md += ["Only one kind of model has results, so there is nothing to compare yet: run "
               "`make finetune` for the fine-tuned baselines.", ""]
        return md
    md += ["| A | B | paired samples | b (A right, B wrong) | c (A wrong, B right) | statistic "
           "| test | p-value | Holm p | significant at 5 % |", "|---|---|---|---|---|---|---|---|---|---|"]
    for a, b, res, note in tests:
        if res is None:
            md.append(f"| {_who(a)} | {_who(b)} | – | – | – | – | – "
                      f"| not computed: {note} | – | – |")
        else:
            md.append(f"| {_who(a)} | {_who(b)} | {res['n']:,} | "
                      f"{res['b']} | {res['c']} | {res['statistic']:.3f} | "
                      f"{res.get('method', '')} | {fp(res['p_value'])} | {fp(res['p_holm'])} | "
                      f"{'yes' if res['reject'] else 'no'} |")
    return md + [""]


def _who(r) -> str:
    return f"{r['method']} @ {r['cut']}" if r.get("cut") else r["method"]


def summary(rows, best, tests) -> str:
    """The "What it says" paragraph, generated from the numbers only."""
    fz, ft, sc = best["classical"], best["finetune"], best["scratch"]
    out = []
    if fz:
        out.append(f"The validation-chosen frozen-feature model is **{describe(fz)}** (val "
                   f"{f4(fz['val_accuracy'])}): test {f4(fz['accuracy'])} "
                   f"(95 % CI [{f4(fz.get('acc_ci_low'))}, {f4(fz.get('acc_ci_high'))}]).")
    else:
        out.append("There are no frozen-feature (classical) results yet: run `make classify`.")
    if ft:
        out.append(f"The validation-chosen fine-tuning depth is **{describe(ft)}** (val "
                   f"{f4(ft['val_accuracy'])}): test {f4(ft['accuracy'])} "
                   f"(95 % CI [{f4(ft.get('acc_ci_low'))}, {f4(ft.get('acc_ci_high'))}]).")
    else:
        out.append("There are no fine-tuning results yet (run `make finetune`), so frozen "
                   "features cannot be compared with fine-tuning.")
    test = next((t for t in tests if t[0] is fz and t[1] is ft), None) if fz and ft else None
    if fz and ft:
        gap = 100 * (ft["accuracy"] - fz["accuracy"])
        who = ("fine-tuning is ahead" if gap > 0 else
               "frozen features are ahead" if gap < 0 else "they tie")
        text = f"The gap is {gap:+.2f} points ({who})"
        if test and test[2]:
            p = test[2]["p_holm"]
            text += (f"; McNemar p = {fp(test[2]['p_value'])} (Holm-adjusted {fp(p)}), so the "
                     f"difference is {'significant' if test[2]['reject'] else 'not significant'} "
                     f"at the 5 % level.")
        else:
            why = test[3] if test else "no predictions"
            text += f"; no paired test was possible ({why})."
        out.append(text)
    if sc and (ft or fz):
        ref = ft or fz
        gap = 100 * (ref["accuracy"] - sc["accuracy"])
        out.append(f"Training from scratch reaches {f4(sc['accuracy'])}; the validation-chosen "
                   f"{'fine-tuned' if ft else 'frozen'} model is {abs(gap):.2f} points "
                   f"{'above' if gap >= 0 else 'below'} it (Yosinski et al. found fine-tuning "
                   f"about 1 point above scratch).")
    px = best.get("pixels")
    if px and fz:
        gap = 100 * (fz["accuracy"] - px["accuracy"])
        out.append(f"The raw-pixel baseline reaches {f4(px['accuracy'])} ({describe(px)}): the "
                   f"validation-chosen frozen features are {abs(gap):.2f} points "
                   f"{'above' if gap >= 0 else 'below'} it"
                   + ("." if gap >= 0 else " — on this data the backbone's features do not beat "
                      "pixels for a strong classifier."))
    out.append(depth_trend(rows))
    chosen = [r for r in rows if r.get("val_accuracy") is not None]
    top = min(chosen, key=_sort_key) if chosen else None
    good = [r for r in chosen if r["val_accuracy"] >= top["val_accuracy"] - GOOD_WITHIN
            and r.get("fit_seconds") is not None] if top else []
    if good:
        cheap = min(good, key=lambda r: (r["fit_seconds"], -r["val_accuracy"]))
        out.append(f"By validation accuracy the best model overall is **{describe(top)}** (val "
                   f"{f4(top['val_accuracy'])}, test {f4(top['accuracy'])}); the cheapest within "
                   f"{100 * GOOD_WITHIN:.0f} point of it on validation is **{describe(cheap)}**: "
                   f"test {f4(cheap['accuracy'])} after {fsec(cheap['fit_seconds'])} s of fitting"
                   + (f", against {fsec(top['fit_seconds'])} s for the best." if cheap is not top
                      and top.get("fit_seconds") is not None else "."))
    return " ".join(t for t in out if t)


def depth_trend(rows) -> str:
    """How the validation-chosen classifier's test accuracy moves with the cut (Yosinski's
    frozen curve); the peak is named by validation accuracy."""
    fz = best_of(rows, "classical")
    if not fz or fz.get("frozen_blocks") is None:
        return ""
    line = {}
    for r in rows:
        if (r["stage"] == "classical" and r.get("classifier") == fz.get("classifier")
                and r.get("frozen_blocks") is not None and not is_pixels(r)
                and r.get("val_accuracy") is not None):
            line[r["frozen_blocks"]] = r
    if len(line) < 2:
        return ""
    ns = sorted(line)
    peak = max(ns, key=lambda n: line[n]["val_accuracy"])
    acc = {n: line[n]["accuracy"] for n in ns}
    return (f"Across cut points, {fz.get('classifier')} goes from {f4(acc[ns[0]])} at n={ns[0]} "
            f"to {f4(acc[ns[-1]])} at n={ns[-1]} on test, peaking on validation at n={peak}"
            + (f"; past that peak frozen features lose {100 * (acc[peak] - acc[ns[-1]]):.2f} "
               f"test points by the deepest cut." if peak != ns[-1] else "."))


def best_models_section(out, best, preds, names) -> list:
    from sklearn.metrics import f1_score
    md = ["## Best models: confusion matrices and per-class F1", ""]
    present = [p for p in preds.values() if p is not None]
    seen = set().union(*(set(p.y_true.tolist()) | set(p.y_pred.tolist()) for p in present))
    labs = list(range(len(names))) if names else sorted(seen)
    shown = _names(labs, names)
    f1s = {}
    for stage, title in (("classical", "best frozen"), ("finetune", "best fine-tuned"),
                         ("scratch", "from scratch")):
        r, p = best.get(stage), preds.get(stage)
        if r is None:
            continue
        if p is None:
            md += [f"*{title}* ({r['method']}): no predictions file, no confusion matrix.", ""]
            continue
        png = f"confusion_{stage}.png"
        plots.confusion(p.y_true, p.y_pred, labs, shown, out / png,
                        f"{title}: {describe(r)}\naccuracy {f4(r['accuracy'])}, rows = true class")
        md += [f"![confusion matrix, {title}]({png})", ""]
        f1s[f"{title} ({f4(r['accuracy'])})"] = f1_score(p.y_true, p.y_pred, labels=labs,
                                                         average=None, zero_division=0)
    if f1s:
        plots.per_class_f1(f1s, shown, out / "per_class_f1.png")
        md += ["![per-class F1](per_class_f1.png)", "",
               "| class | " + " | ".join(f1s) + " |", "|---|" + "---|" * len(f1s)]
        for i, name in enumerate(shown):
            md.append(f"| {name} | " + " | ".join(f4(float(v[i])) for v in f1s.values()) + " |")
        md.append("")
    return md


def galleries_section(out, cfg, best, preds, names, images_for_ids, log) -> list:
    md = ["## Error analysis: most confident mistakes and most uncertain predictions", ""]
    k = int(cfg["report"]["gallery_size"])
    todo = [(s, t) for s, t in (("classical", "best frozen"), ("finetune", "best fine-tuned"))
            if best.get(s) and preds.get(s) is not None and preds[s].proba is not None]
    if not todo:
        return md + ["No best model saved class probabilities, so there are no galleries.", ""]
    if images_for_ids is None:
        try:
            images_for_ids = dataset_images(cfg)
        except Exception as e:  # any failure to load data only costs the galleries
            log(f"report: no galleries, the dataset could not be loaded: {e}")
            return md + [f"No galleries: the dataset `{cfg['dataset']['name']}` could not be "
                         f"loaded to show the images ({type(e).__name__}: {e}).", ""]
    for stage, title in todo:
        r, p = best[stage], preds[stage]
        p_pred, margin = p.confidence()
        wrong = np.flatnonzero(p.y_pred != p.y_true)
        sets = [("mistakes", "most confident mistakes",
                 wrong[np.argsort(-p_pred[wrong], kind="stable")][:k]),
                ("uncertain", "most uncertain predictions (smallest top-2 margin)",
                 np.argsort(margin, kind="stable")[:k])]
        for key, what, idx in sets:
            if len(idx) == 0:
                md += [f"*{title}*: no {key} to show.", ""]
                continue
            try:
                images = as_uint8(images_for_ids(p.ids[idx]))
            except Exception as e:
                md += [f"*{title}*: images unavailable ({type(e).__name__}: {e}).", ""]
                continue
            true, pred = _names(p.y_true[idx], names), _names(p.y_pred[idx], names)
            caps = [f"true: {t}\npred: {q}\np={p_pred[i]:.2f}" for t, q, i in zip(true, pred, idx)]
            png = f"gallery_{stage}_{key}.png"
            plots.gallery(images, caps, out / png, f"{title} — {describe(r)}: {what}",
                          wrong=p.y_pred[idx] != p.y_true[idx])
            md += [f"**{title}, {what}** (p = probability of the predicted class; red = wrong):",
                   "",
                   f"![{title} {what}]({png})", ""]
    return md


def as_uint8(images) -> np.ndarray:
    """Images as uint8 for display (floats in [0, 1] are scaled to [0, 255])."""
    a = np.asarray(images)
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float64)
    if a.size and a.max() <= 1.0:
        a = a * 255
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def umap_section(run_dir, out) -> list:
    md = ["## UMAP of the embeddings", ""]
    done = Path(run_dir) / "umap" / "done.json"
    if not done.is_file():
        return md + ["No UMAP pictures yet: run `make umap` (or `python -m report umap …`).", ""]
    entries = json.loads(done.read_text()).get("entries", [])
    shown = [e for e in entries if e.get("png") and (out / e["png"]).is_file()]
    if not shown:
        return md + ["The UMAP summary lists no pictures that exist: re-run `make umap`.", ""]
    p = shown[0]["params"]
    md += [f"One picture per store, cut point and split, coloured by class; black crosses mark "
           f"the test samples the best classical model at that cut got wrong. n_neighbors="
           f"{p['n_neighbors']}, min_dist={p['min_dist']}, {p['threading']}.", ""]
    for e in shown:
        sub = ("" if e["n_points"] == e["n_total"]
               else f" — subsample of {e['n_points']:,} of {e['n_total']:,} points")
        md += [f"**{e['store']} · {e['cut']} · {e['split']}**{sub}", "",
               f"![UMAP {e['store']} {e['cut']} {e['split']}]({e['png']})", ""]
    return md


def to_html(markdown_text: str, title: str) -> str:
    """Markdown → a standalone HTML page (markdown-it with tables; plain <pre> if unavailable)."""
    try:
        from markdown_it import MarkdownIt
        body = MarkdownIt("commonmark").enable("table").render(markdown_text)
    except ImportError:
        body = f"<pre>{html.escape(markdown_text)}</pre>"
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
             "padding:2px 6px}img{max-width:100%}")
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>\n{body}</body></html>\n")
