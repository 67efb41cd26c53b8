"""Reading submissions without running them: notebooks, statement selection, answers."""
from __future__ import annotations

import ast

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader.child.loading.answers import AnswersError, answers_from_cells, read_answers_yaml
from grader.loading.files import find_files
from grader.child.loading import notebook
from grader.child.loading.notebook import clean_cell, read_code_cells
from grader.child.loading.statements import analyse_unit, plan_statements


# (cell, as the loader reads it): IPython syntax becomes `pass`, line for line; Python stays Python.
JUPYTER_CASES = [
    ("%matplotlib inline\nimport torch\n", "pass\nimport torch\n"),
    ("!pip install x\nx = 1\n", "pass\nx = 1\n"),
    ("%%bash\necho hi\n", "\n\n"),
    ("%%time\nx = 1\n", "\nx = 1\n"),
    ("\n%%capture\nimport torch\n", "\n\nimport torch\n"),
    ("model?\ny = 2\n", "pass\ny = 2\n"),
    ("?model\ny = 2\n", "pass\ny = 2\n"),
    ("model??\n", "pass\n"),
    ("%timeit f()\nz = 3\n", "pass\nz = 3\n"),
    ("%time y = f(2)\n", "y = f(2)\n"),
    ("files = !ls\nn = 1\n", "pass\nn = 1\n"),
    ("if True:\n    !nvidia-smi\n", "if True:\n    pass\n"),
    ("def f():\n    %time g()\n    return 1\n", "def f():\n    g()\n    return 1\n"),
    # Python that the old line-by-line blanking broke:
    ("# the shapes match, right?\nx = 1\n", "# the shapes match, right?\nx = 1\n"),
    ("ok = (a\n      != b)\n", "ok = (a\n      != b)\n"),
    ("r = (n\n     % 2)\n", "r = (n\n     % 2)\n"),
    ("r = n \\\n    % 2\n", "r = n \\\n    % 2\n"),
    ('s = """\n%not a magic\n!nor this?\n"""\n', 's = """\n%not a magic\n!nor this?\n"""\n'),
    ("print('done!')  # ok?\n", "print('done!')  # ok?\n"),
    ("\n\n!pip install x\n", "\n\npass\n"),
]


@pytest.mark.parametrize("source,expected", JUPYTER_CASES)
def test_cells_are_read_as_jupyter_reads_them_keeping_line_numbers(source, expected):
    assert clean_cell(source) == expected
    assert len(clean_cell(source).splitlines()) == len(source.splitlines())
    ast.parse(clean_cell(source))


@pytest.mark.parametrize("source,expected", JUPYTER_CASES)
def test_the_rules_without_ipython_agree_with_ipython(source, expected):
    """The fallback for an environment without IPython gives what IPython's transformer gives."""
    inputtransformer2 = pytest.importorskip("IPython.core.inputtransformer2")
    lines = source.splitlines()
    with_ipython = notebook._transform_with_ipython(lines, inputtransformer2.TransformerManager())
    assert notebook._transform_without_ipython(lines) == with_ipython


def test_notebook_code_cells_keep_their_cell_numbers(tmp_path):
    nb = new_notebook(cells=[new_markdown_cell("# title"), new_code_cell("x = 1"), new_code_cell("%time y = 2")])
    path = tmp_path / "hw4.ipynb"
    nbformat.write(nb, str(path))
    cells = read_code_cells(path)
    assert [c.index for c in cells] == [2, 3] and cells[1].source.strip() == "y = 2"  # as Jupyter runs it


SOURCE = '''"""doc"""
import torch
from torch import nn
try:
    import numpy as np
except ImportError:
    np = None
F = torch.nn.functional
LR = 0.1
SIZES = (1, 2, {"a": [3]})
def f(): return 1
class M(nn.Module): pass
model = M()
for epoch in range(10): train()
print("hi")
if __name__ == "__main__":
    main()
x = f()
'''


def _plan(source: str, targets: list[str] | None, mode: str = "definitions"):
    return plan_statements(analyse_unit("hw4.py", source, ast.parse(source)), targets, mode=mode)


def test_only_definitions_run_when_nothing_graded_needs_more():
    plan = _plan(SOURCE, ["f", "M"])
    kept = [type(s.node).__name__ for s in plan.statements if s.run]
    assert kept == ["Expr", "Import", "ImportFrom", "Try", "Assign", "Assign", "Assign", "FunctionDef", "ClassDef"]
    assert [s.node.lineno for s in plan.skipped] == [13, 14, 15, 16, 18]


def test_mode_all_keeps_everything():
    assert not _plan(SOURCE, ["f"], mode="all").skipped


def test_answers_yaml_is_flattened_to_dotted_ids(tmp_path):
    path = tmp_path / "answers.yaml"
    path.write_text("q4:\n  c1: 156\n  total: 60806\nq5:\n  dg_dxi: w_i*g*(1-g)\np4: |\n  proof\n")
    assert read_answers_yaml(path) == {"q4.c1": 156, "q4.total": 60806, "q5.dg_dxi": "w_i*g*(1-g)", "p4": "proof\n"}


@pytest.mark.parametrize("text,phrase", [
    ("q1: [unclosed\n", "not valid YAML at line"),
    ("- a\n- b\n", "must be a mapping"),
    ("!!python/object/apply:os.system ['true']\n", "not valid YAML"),
])
def test_bad_answers_files_say_what_is_wrong(tmp_path, text, phrase):
    path = tmp_path / "answers.yaml"
    path.write_text(text)
    with pytest.raises(AnswersError, match=phrase):
        read_answers_yaml(path)


def test_answers_cell_is_read_as_a_literal_not_run():
    cells = ["x = 1", "ANSWERS = {'q2': {'dL_dw3': 0.5}, 'q5': 'g*(1-g)'}"]
    assert answers_from_cells(cells) == {"q2.dL_dw3": 0.5, "q5": "g*(1-g)"}
    with pytest.raises(AnswersError, match="plain dict of literals"):
        answers_from_cells(["ANSWERS = {'q2': __import__('os').system('true')}"])


def test_files_are_found_case_insensitively_and_one_folder_down(tmp_path):
    (tmp_path / "HW4.py").write_text("")
    assert find_files(tmp_path, ["hw4.py"], []).code.name == "HW4.py"
    other = tmp_path / "nested"
    (other / "hw4").mkdir(parents=True)
    (other / "hw4" / "hw4.ipynb").write_text("{}")
    assert find_files(other, ["hw4.py", "hw4.ipynb"], []).code.name == "hw4.ipynb"
