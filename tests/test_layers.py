"""The trust boundary in the source tree: which process imports which package (DESIGN.md, "Layout").

- `grader.child` runs in the sandbox next to student code: it may import only itself and the shared
  modules, never the parent's rubric, checks, reports or reference handling.
- `grader.judge` runs the verdicts on exported models: no student code, and never the child package.
- the shared modules (message types, compute libraries) import only each other.
- the trusted parent never imports `grader.child` (it starts the child from a constant bootstrap string).

Walked statically with `ast` over every file, including imports inside functions.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "grader"

# Modules both the child and the judge may import: plain-data message types and pure compute libraries.
SHARED = {"grader", "grader.protocol", "grader.rlimits", "grader.cores", "grader.trusted_import", "grader.models", "grader.probes", "grader.training", "grader.training.harness",
          "grader.training.fitting", "grader.training.loops"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def grader_imports(path: Path) -> set[str]:
    """Every `grader...` module a file imports, anywhere in it (`from grader.x import y` counts y if it is a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "grader"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "grader":
            found.add(node.module)
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if (ROOT.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or \
                        (ROOT.parent / candidate.replace(".", "/")).is_dir():
                    found.add(candidate)
    return found


FILES = sorted(ROOT.rglob("*.py"))
MODULES = {module_name(p): p for p in FILES}


def layer(module: str) -> str:
    if module == "grader.child" or module.startswith("grader.child."):
        return "child"
    if module == "grader.judge" or module.startswith("grader.judge."):
        return "judge"
    if module in SHARED:
        return "shared"
    return "parent"


ALLOWED = {"child": {"child", "shared"}, "judge": {"judge", "shared"}, "shared": {"shared"},
           "parent": {"parent", "shared", "judge"}}


@pytest.mark.parametrize("module", sorted(MODULES), ids=str)
def test_imports_flow_one_way(module: str) -> None:
    own = layer(module)
    bad = sorted(m for m in grader_imports(MODULES[module]) if layer(m) not in ALLOWED[own])
    assert not bad, f"{module} ({own}) imports {bad}: {own} may import only {sorted(ALLOWED[own])}"


def test_child_package_exists_and_is_started_by_a_constant_string() -> None:
    from grader.sandbox.client import BOOTSTRAP

    assert "grader.child.main" in BOOTSTRAP
    assert (ROOT / "child" / "main.py").exists()


def test_the_walker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The rule can fail: a child file importing the rubric loader is caught."""
    fake = ROOT / "child" / "_layer_probe_tmp.py"
    fake.write_text("def f():\n    from grader.rubric.load import load_rubric\n")
    try:
        imports = grader_imports(fake)
    finally:
        fake.unlink()
    assert "grader.rubric.load" in imports
    assert layer("grader.rubric.load") not in ALLOWED["child"]


def test_the_judge_imports_no_child_or_sandbox_code_and_is_started_by_a_constant_string() -> None:
    """The judge holds no student code: none of its modules reaches grader.child or the sandbox client."""
    from grader.judge.server import BOOTSTRAP

    judge_modules = [m for m in MODULES if layer(m) == "judge"]
    assert {"grader.judge.graph", "grader.judge.server", "grader.judge.worker"} <= set(judge_modules)
    for module in judge_modules:
        reached = grader_imports(MODULES[module])
        assert not any(m.startswith(("grader.child", "grader.sandbox", "grader.checks")) for m in reached), (module, reached)
    assert "grader.judge.server" in BOOTSTRAP
