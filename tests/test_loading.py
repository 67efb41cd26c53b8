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


# --- loading by need ----------------------------------------------------------------------------

NOTEBOOK_LIKE = '''
import time
import torch
from torch import nn
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
table = [[(i + k) % 6 for k in range(3)] for i in range(6)]
extra = []
for i in range(6):
    extra.append(i)
input_size = 28 * 28
criterion = nn.CrossEntropyLoss()
train_loader = DataLoader(datasets.MNIST("data", download=True))
class C3(nn.Module):
    def forward(self, x, scale=1.0):
        return x.to(device) * len(table) + len(extra)
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c3 = C3()
        self.fc = nn.Linear(input_size, 10)
def train_one_epoch(model, loader):
    for x, y in loader:
        criterion(model(x), y).backward()
def plot_curve():
    plt.plot(losses)
model = Net().to(device)
losses = []
for epoch in range(10):
    train_one_epoch(model, train_loader)
time.sleep(1000)
'''


def test_the_statements_graded_definitions_read_run_and_nothing_else():
    plan = _plan(NOTEBOOK_LIKE, ["Net", "train_one_epoch"])
    needed_run = {s.text.split(" ")[0] for s in plan.statements if s.run and not s.always}
    # device, table, extra (filled by the loop), input_size, criterion: read by Net, C3 and the loop
    assert needed_run == {"device", "table", "for", "input_size", "criterion"}
    assert next(s for s in plan.statements if s.text.startswith("for i")).reached_from == ["Net"]
    skipped = [s.text for s in plan.skipped]
    assert skipped == ['train_loader = DataLoader(datasets.MNIST("data", download=True))', "model = Net().to(device)",
                       "for epoch in range(10):", "time.sleep(1000)"]


def test_without_targets_every_definitions_reads_are_needed():
    plan = _plan(NOTEBOOK_LIKE, None)
    # a safe superset: what any definition reads (plot_curve reads losses), still not the data loader
    assert {"device", "criterion", "losses", "plt"} <= plan.needed and "train_loader" not in plan.needed
    assert [s.text for s in plan.skipped] == ['train_loader = DataLoader(datasets.MNIST("data", download=True))',
                                             "model = Net().to(device)", "for epoch in range(10):", "time.sleep(1000)"]


@pytest.mark.parametrize("source,target,needed,not_needed", [
    # a loop variable bound by the statement itself is not a read of an outer name
    ("i = heavy()\nT = [0]\nfor i in range(3):\n    T.append(i)\ndef f(): return T\n", "f", {"T"}, {"i"}),
    # comprehension variables are local; its first iterable is not
    ("k = heavy()\nN = int('3')\ndef f(): return [k * 2 for k in range(N)]\n", "f", {"N"}, {"k"}),
    # a default argument and a decorator are read when the definition runs
    ("D = dict(a=1)\ndeco = make()\n@deco\ndef f(x=D): return x\n", "f", {"D", "deco"}, set()),
    # a class body's names, a method's globals, `global` declarations
    ("A = int('1')\nB = int('2')\nclass C:\n    a = A\n    def m(self):\n        global B\n        return B\n", "C", {"A", "B"}, set()),
    # what a needed function calls is needed too, transitively
    ("S = float('2')\ndef helper(): return S\ndef f(): return helper()\n", "f", {"helper", "S"}, set()),
    # a method's own locals and parameters shadow module names
    ("x = heavy()\ndef f(x): return x\n", "f", set(), {"x"}),
])
def test_free_names_follow_python_scoping(source, target, needed, not_needed):
    plan = _plan(source, [target])
    assert needed <= plan.needed and not (not_needed & plan.needed), plan.needed
    assert all(not s.run for s in plan.statements if s.binds and s.binds <= not_needed and not s.always)


# --- the feedback of checks that touch what loading did (engine._add_load_hint) ----------------

def _spec(kind: str, target: str, **params):
    from grader.rubric.model import CheckSpec

    return CheckSpec(id="q", kind=kind, question="q", title="t", points=5, target=target, params=params)


def _result(*feedback: str):
    from grader.results import CheckResult

    return CheckResult(check_id="q", title="t", question="q", score=0, max_score=5, feedback=list(feedback))


def _load(**kwargs):
    from grader.sandbox.client import LoadReport

    return LoadReport(ok=False, **kwargs)


def test_a_failed_needed_statement_is_named_in_every_check_that_uses_it():
    from grader.engine import _add_load_hint

    failure = {"names": ["device"], "targets": ["C3_layer", "LeNet"], "where": "hw4.ipynb cell 3, line 2",
               "code": 'device = torch.device("cuda:1")', "error": "RuntimeError: no CUDA GPUs are available"}
    load = _load(names=["C3_layer", "LeNet", "LR"], needed_failed=[failure])
    for target, named in [("C3_layer", True), ("LeNet", True), ("LR", False)]:
        result = _result("Running it failed: NameError: name 'device' is not defined" if named else "wrong values")
        _add_load_hint(result, _spec("module_structure", target), load)
        hint = ("'device' is not defined because the statement that defines it, hw4.ipynb cell 3, line 2 "
                "(`device = torch.device(\"cuda:1\")`), failed at load: RuntimeError: no CUDA GPUs are available")
        assert (hint in result.feedback) is named


def test_a_name_the_loader_skipped_is_said_to_be_skipped_with_its_line():
    from grader.engine import _add_load_hint

    load = _load(names=["train_one_epoch", "MNISTClassifierMlp"], errors=["hw4.py, line 3: ModuleNotFoundError: No module named 'torchsummary'"],
                 skipped_defines={"criterion": "hw4.py, line 9 (`criterion = make_loss()`)"})
    result = _result("Running train_one_epoch failed: NameError: name 'criterion' is not defined (hw4.py, line 14)")
    _add_load_hint(result, _spec("training_loop", "MNISTClassifierMLP", train_function="train_one_epoch"), load)
    text = "\n".join(result.feedback)
    assert "'criterion' is not defined because the loader skipped the line that defines it, hw4.py, line 9" in text
    assert "torchsummary" not in text  # an import error elsewhere cannot hide a definition
    assert "'MNISTClassifierMLP' is not defined after loading, but 'MNISTClassifierMlp' is" in text


def test_answers_and_passed_checks_get_no_load_hint():
    from grader.engine import _add_load_hint

    load = _load(names=["f"], errors=["a2.ipynb cell 1, line 3: ModuleNotFoundError: No module named 'torchsummary'"])
    for spec in [_spec("numeric", "q3.conv_flops"), _spec("expression", "q6.tanh"), _spec("manual", "q2_2")]:
        result = _result("No answer for 'q3.conv_flops' in answers.yaml: add it.")
        _add_load_hint(result, spec, load)
        assert len(result.feedback) == 1


def test_a_syntax_error_is_still_named_for_a_name_it_may_hide():
    from grader.engine import _add_load_hint

    load = _load(names=[], errors=["hw4.ipynb cell 4, line 2: syntax error: '(' was never closed",
                                   "hw4.ipynb cell 1, line 3: ModuleNotFoundError: No module named 'torchsummary'"])
    result = _result("NameError: 'avgpool_as_conv' is not defined in the submission")
    _add_load_hint(result, _spec("conv_filter", "avgpool_as_conv"), load)
    assert result.feedback[-1] == ("'avgpool_as_conv' is not defined after loading; perhaps because of: "
                                   "hw4.ipynb cell 4, line 2: syntax error: '(' was never closed")


def _answers_context(load):
    from types import SimpleNamespace

    rubric = SimpleNamespace(answer_files=["answers.yaml"], code_files=["a2.ipynb"], checks=[])
    return SimpleNamespace(answers=(load.answers or {}) if load else {}, load=load, rubric=rubric)


def test_a_missing_answer_is_blamed_on_an_unreadable_cell_never_on_an_import_error():
    from grader.checks.answer_keys import lookup_answer

    imports = _load(errors=["a2.ipynb cell 2, line 3: ModuleNotFoundError: No module named 'torchsummary'"])
    _, outcome = lookup_answer(_answers_context(imports), "q3.conv_flops")
    assert "torchsummary" not in outcome.feedback[0] and outcome.feedback[0].startswith("No answers were found")
    syntax = _load(errors=["a2.ipynb cell 9, line 4: syntax error: '{' was never closed"])
    _, outcome = lookup_answer(_answers_context(syntax), "q3.conv_flops")
    assert outcome.feedback[0].endswith("(A notebook cell could not be read, so an ANSWERS cell there was not seen: "
                                        "a2.ipynb cell 9, line 4: syntax error: '{' was never closed)")


def test_a_failed_statement_that_redefines_a_name_says_the_name_is_defined_but_not_as_intended():
    from grader.engine import _add_load_hint

    failure = {"names": ["SCALE"], "targets": ["f"], "where": "hw4.py, line 9", "code": "SCALE = calibrate()",
               "error": "RuntimeError: no data"}
    result = _result("wrong values")
    _add_load_hint(result, _spec("tensor_function", "f"), _load(names=["f", "SCALE"], needed_failed=[failure]))
    assert result.feedback[-1] == ("'SCALE' is defined at hw4.py, line 9 (`SCALE = calibrate()`), which failed at load: "
                                   "RuntimeError: no data")
