"""``from grader.kit import check; check("p1")``: a public check on the notebook's current code.

The notebook's objects are never graded in the notebook's own kernel. What
is handed to the grader is the notebook's *source*: the cells run so far (IPython's
``In`` history), written as a notebook file in a temporary folder and loaded
by the normal loader in the sandbox child, exactly as ``grader check --kit``
would load the saved notebook. Lines that call the kit (``from grader.kit
import check``, ``check(...)``) are left out of that source: they are not the
student's answer and would only recurse.
"""
from __future__ import annotations

import ast
import os
import tempfile
from pathlib import Path
from typing import Any

import nbformat

from grader.errors import UsageError


def _is_kit_statement(node: ast.stmt) -> bool:
    if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "grader":
        return True
    if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "grader" for a in node.names):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        func = node.value.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        return name == "check"
    return False


def without_kit_calls(source: str) -> str:
    """The cell's source minus its top-level statements that import the grader or call check()."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source  # the loader reports the syntax error with its line, as in grading
    lines = source.splitlines(keepends=True)
    drop: set[int] = set()
    for node in tree.body:
        if _is_kit_statement(node):
            drop.update(range(node.lineno - 1, (node.end_lineno or node.lineno)))
    return "".join(line for i, line in enumerate(lines) if i not in drop)


def notebook_cells() -> list[str]:
    """The source of the cells run so far in this IPython kernel, in order."""
    try:
        from IPython import get_ipython
    except ImportError:
        get_ipython = None  # type: ignore[assignment]
    shell = get_ipython() if get_ipython is not None else None
    if shell is None:
        raise UsageError("check() reads the notebook's cells, so it runs inside Jupyter/IPython; in a terminal run "
                         "`grader check my_hw/ --kit KIT` instead")
    history = shell.user_ns.get("In") or []
    return [cell for cell in history[1:] if isinstance(cell, str)]


def write_notebook(cells: list[str], folder: Path, name: str) -> Path:
    """The cells as a notebook file (or, when the rubric takes only .py files, as one module)."""
    kept = [c for c in (without_kit_calls(c) for c in cells) if c.strip()]
    path = folder / name
    if name.endswith(".ipynb"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in kept])
        nbformat.write(nb, str(path))
    else:
        path.write_text("\n\n".join(kept) + "\n", encoding="utf-8")
    return path


def check(*check_ids: str, kit: str | os.PathLike[str] | None = None, cells: list[str] | None = None) -> Any:
    """Run the kit's public checks `check_ids` on this notebook's code and print the feedback.

    `kit` is the kit's folder (default: $GRADER_KIT, else the current folder or one above it);
    `cells` replaces the kernel's history (for scripts and tests). Returns the `GradingRun`.
    """
    from rich.console import Console

    from grader.kit.selftest import find_kit, load_kit, self_test
    from grader.report import terminal

    if not check_ids:
        raise UsageError("name the check(s) to run, e.g. check(\"p1\")")
    loaded = load_kit(find_kit(kit))
    names = loaded.rubric.code_files
    name = next((n for n in names if n.endswith(".ipynb")), None) or next((n for n in names if n.endswith(".py")), names[0])
    with tempfile.TemporaryDirectory(prefix="grader-kit-check-") as tmp:
        write_notebook(cells if cells is not None else notebook_cells(), Path(tmp), name)
        run = self_test(Path(tmp), loaded, only=list(check_ids))
    run.submission = "this notebook"
    terminal.print_run(run, Console(width=100), student=True)
    return run
