"""The report's formatting: number formats, a row's human name and the results table."""
from __future__ import annotations

from backbones.registry import is_pixels
from cutpoint import results


def f4(x) -> str:
    return "–" if x is None else f"{x:.4f}"


def fsec(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def fint(x) -> str:
    return "–" if x is None else f"{int(x):,}"


def fp(p) -> str:
    return "< 1e-300" if p < 1e-300 else f"{p:.3g}"


def on_pixels(r) -> bool:
    """Whether a results row is a model on the raw-pixel baseline (its backbone or its cut)."""
    return is_pixels(r.get("backbone")) or is_pixels(r.get("cut"))


def describe(r) -> str:
    """A short human name for a row: what was trained, where."""
    n = r.get("frozen_blocks")
    if r["stage"] == "classical":
        clf = r.get("classifier") or r["method"]
        return (f"{clf} on raw pixels" if on_pixels(r)
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


def names_of(labels, names):
    return [names[v] if 0 <= v < len(names) else str(v) for v in labels]
