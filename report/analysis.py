"""What the report says, computed from the rows: the validation-chosen best of each stage, the
paired McNemar tests fixed before test is read (Holm-corrected), the summary paragraph and the
frozen curve across cut points."""
from __future__ import annotations

import numpy as np

from cutpoint import results
from report.inputs import Predictions, load_predictions
from report.tables import describe, f4, fp, fsec, on_pixels

GOOD_WITHIN = 0.01   # "cheapest good option": within 1 accuracy point of the best
ALPHA = 0.05


def best_of(rows, stage, pixels=False):
    """The validation-chosen row of a stage (highest `val_accuracy`, never test accuracy);
    classical rows split into frozen features and the raw-pixel baseline. Rows without a
    validation score cannot be chosen."""
    cand = [r for r in rows if r["stage"] == stage and r.get("accuracy") is not None
            and r.get("val_accuracy") is not None
            and (stage != "classical" or on_pixels(r) == pixels)]
    return min(cand, key=results.rank_key) if cand else None


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
    top = min(chosen, key=results.rank_key) if chosen else None
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
                and r.get("frozen_blocks") is not None and not on_pixels(r)
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
