"""The layers of the house, read from the source with `ast` (every import, module- or function-
level): the core imports nothing above it; `backbones` imports only the core; a stage imports the
core, `backbones` and itself — never another stage — except the composers, which sit above the
stages they compose. No module takes part in an import cycle."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = {"cutpoint", "embeddings"}
STAGES = {"extract", "classical", "finetune", "report", "curve", "predict"}
# Packages that compose stages, and the stages each may import. curve runs the classical models
# and fine-tuning on label budgets and draws its figure with report's plotting; predicting from
# new images (part B's `predict`) composes a classical model with the backbone's embedding.
COMPOSERS = {"curve": {"classical", "finetune", "report"}, "predict": {"classical"}}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in sorted(CORE | STAGES | {"backbones"}):
        for path in sorted((ROOT / pkg).rglob("*.py")) if (ROOT / pkg).is_dir() else []:
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """Project modules `name` imports (resolved to the longest known module name)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            # `from pkg import mod` imports the module; `from mod import name`, the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _top(module: str) -> str:
    return module.split(".")[0]


def _allowed(module: str) -> set[str]:
    top = _top(module)
    if top in CORE:
        return CORE
    if top == "backbones":
        return CORE | {"backbones"}
    return CORE | {"backbones", top} | COMPOSERS.get(top, set())


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_only_the_layers_below_it(module):
    bad = sorted(m for m in _imports(module) if _top(m) not in _allowed(module))
    assert not bad, (f"{module} imports {bad}: a {_top(module)} module may import only "
                     f"{sorted(_allowed(module))}")


def test_the_rule_sees_function_level_imports():
    assert "backbones.embed" in _imports("predict")   # imported inside a function
    assert {"extract.plan", "extract.distributed"} <= _imports("extract.extractor")


def _cycles() -> set[frozenset]:
    graph = {m: _imports(m) for m in MODULES}
    index, low, stack, on, out, counter = {}, {}, [], set(), set(), [0]

    def visit(v):   # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.add(frozenset(comp))

    for m in graph:
        if m not in index:
            visit(m)
    return out


def test_no_import_cycles():
    cycles = _cycles()
    assert not cycles, f"import cycles: {[sorted(c) for c in cycles]}"


def test_splits_imports_datasets_and_never_the_reverse():
    assert "cutpoint.datasets" in _imports("cutpoint.splits")
    datasets = {m for m in MODULES if m.split(".")[:2] == ["cutpoint", "datasets"]}
    assert datasets, "cutpoint.datasets not found"
    for m in datasets:
        assert "cutpoint.splits" not in _imports(m), f"{m} imports cutpoint.splits"
