"""The layering of the packages (docs/api.md, docs/evaluation.md): query/ is the serving layer,
so it never imports the offline evaluation nor pyspark; the evaluation imports pyspark only
inside the functions that split and train."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _modules(package: str) -> list[str]:
    return sorted(f"{package}.{p.stem}" for p in (REPO / package).glob("*.py") if p.stem != "__init__")


def _imported_top_levels(modules: list[str]) -> set[str]:
    """The top-level packages in sys.modules of a fresh interpreter that imported `modules`."""
    code = f"import sys; import {', '.join(modules)}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return set(out.stdout.split())


def test_the_query_modules_are_found():
    # the scans below are only as good as this list
    assert {"query.recommender", "query.service", "query.fromstore"} <= set(_modules("query"))
    assert {"evaluation.run", "evaluation.tuning", "evaluation.plots"} <= set(_modules("evaluation"))


def test_importing_every_query_module_imports_neither_the_evaluation_nor_spark():
    loaded = _imported_top_levels(_modules("query"))
    assert "query" in loaded
    assert not loaded & {"evaluation", "pyspark", "py4j"}


def test_importing_every_evaluation_module_imports_no_spark():
    loaded = _imported_top_levels(_modules("evaluation"))
    assert "evaluation" in loaded
    assert not loaded & {"pyspark", "py4j"}


def _imports(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in the file (function bodies too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_query_file_imports_the_evaluation():
    offenders = {p.name: sorted(n for n in _imports(p) if n.split(".")[0] == "evaluation")
                 for p in sorted((REPO / "query").glob("*.py"))}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_import_scan_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from evaluation.run import evaluate\n    import evaluation.plots\n")
    assert _imports(sample) == {"evaluation.run", "evaluation.plots"}
