"""The run-folder contract: every file name of a run folder is written once, in
`cutpoint.runfolder`; stage modules take the names from there."""
import ast
from pathlib import Path

from cutpoint import runfolder as rf

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cutpoint", "embeddings", "backbones", "extract", "classical", "finetune", "report",
            "curve", "predict")
NAMES = {rf.RESULTS, rf.RESULTS_ARCHIVE, rf.SPLITS, rf.EMBEDDINGS, rf.PIXELS, rf.EXTRACT_STAMP,
         rf.SKIPPED_FILES, rf.DONE, rf.FAILED}


def test_run_folder_names_are_spelled_only_in_runfolder():
    found = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path == ROOT / "cutpoint" / "runfolder.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and node.value in NAMES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not found, f"run-folder names outside cutpoint.runfolder: {found}"


def test_helpers(tmp_path):
    assert rf.results_csv(tmp_path) == tmp_path / "results.csv"
    assert rf.done_json(tmp_path, rf.CLASSICAL) == tmp_path / "classical" / "done.json"
    assert rf.stores(tmp_path) == []
    (tmp_path / "pixels.h5").touch()
    (tmp_path / "embeddings.h5").touch()
    assert rf.stores(tmp_path) == [tmp_path / "embeddings.h5", tmp_path / "pixels.h5"]
