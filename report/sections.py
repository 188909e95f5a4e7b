"""The report's sections that draw figures or read further files: significance table,
confusion matrices and per-class F1, error galleries, UMAP pictures."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cutpoint import runfolder as rf
from report import plots
from report.inputs import dataset_images
from report.tables import describe, f4, fp, names_of


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


def best_models_section(out, best, preds, names) -> list:
    from sklearn.metrics import f1_score
    md = ["## Best models: confusion matrices and per-class F1", ""]
    present = [p for p in preds.values() if p is not None]
    seen = set().union(*(set(p.y_true.tolist()) | set(p.y_pred.tolist()) for p in present))
    labs = list(range(len(names))) if names else sorted(seen)
    shown = names_of(labs, names)
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
            true, pred = names_of(p.y_true[idx], names), names_of(p.y_pred[idx], names)
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
    done = rf.done_json(run_dir, rf.UMAP)
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
