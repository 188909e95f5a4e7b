"""The report stage (BRIEF §8): UMAP pictures of the embeddings and the side-by-side report.

`run_umap(run_dir, cfg)` embeds every cut point of the run's stores in 2-D and draws them;
`build_report(run_dir, cfg)` writes ``report/report.md`` (+ HTML and PNGs) from the results table.
Both read only files the earlier stages wrote, so either can be re-run alone.
"""
from report.build import build_report
from report.umap_stage import run_umap

__all__ = ["build_report", "run_umap"]
