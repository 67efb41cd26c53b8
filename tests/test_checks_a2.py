"""Each a2 check on right and wrong answers, graded through the real engine in one sandbox run.

Tables of (check id, answer, expected score, phrase in the feedback): every
answer is written to one answers.yaml under its own key, and each row grades
a copy of the rubric's check pointed at that key. The q7 rows grade variants
of build_mlp from tests/data/a2_variants.py in the same run; the submission is
a notebook whose ANSWERS cell holds the answers. A second run grades an
answers.yaml made only of injection strings.
"""
from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import ROOT, grade

class _Missing:
    def __repr__(self) -> str:  # a stable test id: pytest-xdist's workers must collect the same ids
        return "MISSING"


MISSING = _Missing()  # the key is absent from answers.yaml

# (check id in rubrics/a2.yaml, answer, params overridden, expected score, phrase in feedback)
ANSWER_CASES = [
    # q1: matrices do not commute; scalars do
    ("q1.W_eff", "a^2*W2*W1", {}, 5, "Equivalent"),
    ("q1.W_eff", "a*W2*a*W1", {}, 5, "Equivalent"),
    ("q1.W_eff", "(a*W2)*(W1*a)", {}, 5, "Equivalent"),
    ("q1.W_eff", "a**2*W1*W2", {}, 0, "wrong order"),
    ("q1.W_eff", "W2*W1", {}, 0, "is not correct"),
    ("q1.b_eff", "a*(W2*(a*b1 + c) + b2) + c", {}, 5, "decided by expand"),
    ("q1.b_eff", "a**2*W2*b1 + a*c*W2 + a*b2 + c", {}, 5, "Equivalent"),
    ("q1.b_eff", "a**2*b1*W2 + a*W2*c + a*b2 + c", {}, 0, "order of factors matters"),
    # q5: g in (0, 1), any equivalent form
    ("q5.dg_dxi", "w_i*g*(1-g)", {}, 10, "Correct"),
    ("q5.dg_dxi", "w_i * exp(log(1/g - 1)) * g^2", {}, 10, "Correct"),
    ("q5.dg_dxi", "g*w_i - w_i*g**2", {}, 10, "Correct"),
    ("q5.dg_dxi", "g*(1-g)", {}, 0, "inner derivative"),
    ("q5.dg_dxi", "w_i*g*(1+g)", {}, 0, "decided by random-points"),
    ("q5.dg_dxi", "w_i*sigma(g)", {}, 0, "Did you mean `sigmoid`?"),
    ("q5.dg_dxi", "w_i*g*(1-h)", {}, 0, "Symbols in this question: g, w_i, x_i."),
    ("q5.dg_dxi", "w_i g (1-g)", {}, 0, "not a well-formed expression"),
    ("q5.dg_dxi", MISSING, {}, 0, "No answer for"),
    # q6: sigmoid identities
    ("q6.tanh", "2*sigmoid(2*x) - 1", {}, 5, "Correct"),
    # issue 13: "written with sigmoid" (must_use: [sigmoid], must_not_use: [tanh]): restating the question is no answer
    ("q6.tanh", "tanh(x)", {}, 0, "Write tanh in terms of sigmoid; your answer to 'v.k"),
    ("q6.tanh", "tanh(x)", {}, 0, "It is equal to the expected expression, but not in the form the question asks for"),
    ("q6.tanh", "(exp(x) - exp(-x))/(exp(x) + exp(-x))", {}, 0, "in terms of sigmoid, as the question asks; it does not use sigmoid"),
    ("q6.tanh", "(exp(x) - exp(-x))/(exp(x) + exp(-x))", {"must_use": [], "must_not_use": []}, 5, "Correct"),
    ("q6.tanh", "tanh(x)", {"must_use": [], "must_not_use": []}, 5, "decided by simplify"),
    ("q6.tanh", "2*sigmoid(2*x) - 1 + 0*tanh(x)", {}, 0, "uses tanh itself"),
    ("q6.tanh", "1 - 2*sigmoid(-2*x)", {}, 5, "Correct"),
    ("q6.tanh", "2*sigmoid(x) - 1", {}, 0, "is not correct"),
    ("q6.tanh", "2*sigmoid(2*x) + 1", {}, 0, "differs from the expected one by the constant"),
    ("q6.tanh", 1, {}, 0, "It is not equal to the expected expression either"),
    ("q6.tanh", ["2*sigmoid(2*x) - 1"], {}, 0, "not a list"),
    ("q6.tanh", "exp(exp(exp(20 + x^2)))", {"must_use": []}, 0, "a member of the course staff will look"),
    ("q6.tanh", "exp(exp(exp(20 + x^2)))", {"must_use": [], "undecided_credit": 0.5}, 2.5, "not a verdict that you are wrong"),
    ("q6.tanh", "exp(exp(exp(20 + x^2)))", {"undecided_credit": 0.5}, 0, "was not decided either"),
    ("q6.dtanh", "4*sigmoid(2*x) - 4*sigmoid(2*x)^2", {}, 5, "Correct"),
    ("q6.dtanh", "1 - tanh(x)^2", {}, 0, "Write tanh in terms of sigmoid"),
    ("q6.dtanh", "4*sigmoid(2*x)*(1-sigmoid(x*2))", {}, 5, "Correct"),
    ("q6.dtanh", "2*sigmoid(2*x)*(1 - sigmoid(2*x))", {}, 0, "lost the inner derivative"),
    # q2: relative tolerance 1e-3
    ("q2.dL_dw3", -9.2427e-05, {}, 10, "Correct"),
    ("q2.dL_dw3", "-9.24e-5", {}, 10, "Correct"),
    ("q2.dL_dw3", "-0.0000924", {}, 10, "Correct"),
    ("q2.dL_dw3", -9.3e-05, {}, 0, "is not correct"),
    ("q2.dL_dw3", 9.2427e-05, {}, 0, "Check the sign"),
    ("q2.dL_dw3", "about -9.2e-5", {}, 0, "not a plain number"),
    ("q2.dL_dw1", MISSING, {}, 0, "optional and was not answered"),
    ("q2.dL_dw1", 0.000276, {}, 0, "Correct"),
    # q3: conventions with the rubric's credit
    ("q3.conv_flops", "1,151,280", {}, 4, "Correct: 1,151,280"),
    ("q3.conv_flops", 1151280, {}, 4, "Correct"),
    ("q3.conv_flops", "1.15128e6", {}, 4, "Correct"),
    ("q3.conv_flops", 576000, {}, 2, "multiply-accumulates"),
    ("q3.conv_flops", 1152000, {}, 2, "FlopCounterMode"),
    ("q3.conv_flops", 1151281, {}, 0, "is not correct"),
    ("q3.conv_flops", "1151280 FLOPs", {}, 0, "without units, words or arithmetic"),
    ("q3.conv_flops", "1,15,1280", {}, 0, "commas only between groups of three digits"),
    ("q3.conv_flops", "2*576000", {}, 0, "not a plain number"),
    ("q3.conv_flops", True, {}, 0, "not a number"),
    ("q3.total_flops", 1154560, {}, 4, "Accepted"),
    ("q3.total_flops", 578560, {}, 2, "multiply-accumulates"),
    # q4: modern and original readings, known mistakes
    ("q4.c3", 1516, {}, 2, "Correct"),
    ("q4.c3", 2496, {}, 0, "one bias, not one per input map"),
    ("q4.c3", 2416, {}, 0, "Table I"),
    ("q4.total", 60806, {}, 2, "Correct"),
    ("q4.total", 60000, {}, 2, "1998 paper"),
    ("q4.total", 61786, {}, 0, "one bias"),
    ("q4.s2", 12, {}, 2, "Accepted"),
    ("q4.output", 0, {}, 2, "RBF"),
    ("q4.output", MISSING, {}, 0, "written as 'q4: {output: ...}'"),
]

# (check id, build_mlp variant in tests/data/a2_variants.py, expected score, phrase)
CODE_CASES = [
    ("q7.structure", "mlp_sequential", 6, "trainable parameters"),
    ("q7.structure", "mlp_one_layer_too_many", 0, "expected 25,450"),
    ("q7.structure", "mlp_wrong_output", 0, "expected (3, 10)"),
    ("q7.dropout", "mlp_sequential", 4, "active in train() and off in eval()"),
    ("q7.dropout", "mlp_functional_dropout", 0, "training=self.training"),
    ("q7.dropout", "mlp_ignores_dropout", 0, "not active in training"),
]

INJECTIONS = [
    "__import__('os').system('touch {marker}')",
    "(lambda: __import__('os').system('touch {marker}'))()",
    "().__class__.__bases__[0].__subclasses__()",
    "x.__class__.__mro__",
    "sigmoid.__globals__['__builtins__']",
    "exec(\"import os; os.system('touch {marker}')\")",
    "eval('1+1')",
    "9**9**9",
    "10**10**10 * g",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "open('{marker}', 'w').write('x')",
    "getattr(x, '__class__')",
    "globals()",
    "import os",
    "f'{{__import__(\"os\").system(\"touch {marker}\")}}'",
    "x if __import__('os').system('touch {marker}') else x",
    "__builtins__.__dict__['exec']('1')",
    "(w_i := 3)",
    "'a' * 10**9",
    "breakpoint()",
]


@pytest.fixture(scope="module")
def a2_rubric():
    from grader.rubric.load import load_rubric

    return load_rubric(ROOT / "rubrics" / "a2.yaml")


def _question(rubric, specs):
    question = dataclasses.replace(rubric.questions[0], checks=tuple(specs), points=sum(s.points for s in specs))
    return dataclasses.replace(rubric, questions=[question])


@pytest.fixture(scope="module")
def graded(a2_rubric, tmp_path_factory):
    """One submission with every answer under its own key, and every build_mlp variant."""
    folder = tmp_path_factory.mktemp("a2_variants")
    answers = {f"k{i}": answer for i, (_, answer, _, _, _) in enumerate(ANSWER_CASES) if answer is not MISSING}
    answers["dg_dix"] = "w_i*g*(1-g)"  # a misspelt key (see test_a_misspelt_key_gets_a_suggestion)
    # As a notebook: build_mlp variants in one cell, the answers in an `ANSWERS = {...}` cell (read as
    # data, never run); the examples and the injection test cover answers.yaml.
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell((ROOT / "tests" / "data" / "a2_variants.py").read_text()),
                      nbformat.v4.new_code_cell(f"ANSWERS = {{'v': {answers!r}}}")]
    nbformat.write(notebook, folder / "a2.ipynb")
    by_id = {c.id: c for c in a2_rubric.checks}
    specs = []
    for i, (cid, answer, params, _, _) in enumerate(ANSWER_CASES):
        target = "q4.output" if answer is MISSING and cid == "q4.output" else f"v.k{i}"
        specs.append(dataclasses.replace(by_id[cid], id=f"{cid}#a{i}", target=target, params={**by_id[cid].params, **params}))
    specs.append(dataclasses.replace(by_id["q5.dg_dxi"], id="q5.dg_dxi#typo", target="v.dg_dxi"))
    for i, (cid, variant, _, _) in enumerate(CODE_CASES):
        specs.append(dataclasses.replace(by_id[cid], id=f"{cid}#c{i}", target=variant))
    run = grade(folder, _question(a2_rubric, specs))
    return {r.check_id: r for r in run.results}


@pytest.mark.parametrize("i", range(len(ANSWER_CASES)), ids=[f"{c[0]}-{c[1]!r}"[:60] for c in ANSWER_CASES])
def test_answer_score_and_feedback(graded, i):
    check_id, answer, _, score, phrase = ANSWER_CASES[i]
    result = graded[f"{check_id}#a{i}"]
    text = "\n".join(result.feedback)
    assert result.score == score, text
    assert phrase in text, text
    if score < result.max_score:
        assert result.items, "a check that loses points names the rubric item"


@pytest.mark.parametrize("i", range(len(CODE_CASES)), ids=[f"{c[0]}-{c[1]}" for c in CODE_CASES])
def test_build_mlp_score_and_feedback(graded, i):
    check_id, _, score, phrase = CODE_CASES[i]
    result = graded[f"{check_id}#c{i}"]
    text = "\n".join(result.feedback)
    assert result.score == score, text
    assert phrase in text, text


def test_the_method_that_decided_is_recorded(graded):
    methods = {graded[f"{c}#a{i}"].method for i, (c, _, _, _, _) in enumerate(ANSWER_CASES) if c.startswith(("q1", "q5", "q6"))}
    assert {"identical", "expand", "simplify", "random-points", "undecided"} <= methods


def test_missing_answer_names_the_key_and_the_file(graded):
    i = next(i for i, c in enumerate(ANSWER_CASES) if c[0] == "q5.dg_dxi" and c[1] is MISSING)
    text = "\n".join(graded[f"q5.dg_dxi#a{i}"].feedback)
    assert f"'v.k{i}'" in text and "answers.yaml" in text and "ANSWERS = {...} cell of a2.ipynb" in text


def test_a_misspelt_key_gets_a_suggestion(graded):
    text = "\n".join(graded["q5.dg_dxi#typo"].feedback)
    assert "You have an answer under 'v.dg_dix': did you mean 'v.dg_dxi'?" in text


def test_an_answers_file_of_injection_strings_grades_to_zero_quickly_and_runs_nothing(a2_rubric, tmp_path):
    marker = Path("/tmp") / f"grader-injection-{uuid.uuid4().hex}"
    keys = [c.target for c in a2_rubric.checks if c.kind in ("expression", "numeric")]
    answers: dict[str, dict[str, str]] = {}
    for k, key in enumerate(keys):
        head, tail = key.split(".", 1)
        answers.setdefault(head, {})[tail] = INJECTIONS[k % len(INJECTIONS)].format(marker=marker)
    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "answers.yaml").write_text(yaml.safe_dump(answers))
    started = time.perf_counter()
    run = grade(folder, a2_rubric)
    assert time.perf_counter() - started < 30
    assert run.score == 0
    for r in run.results:
        if r.check_id.startswith("q7"):
            continue  # no code file: nothing to build
        text = "\n".join(r.feedback)
        assert "could not be read as math" in text or "is not a number" in text, (r.check_id, text)
    assert not marker.exists()


# --- rubric meaning checks of the expression and numeric kinds (no sandbox) -----------------


def _rubric_errors(tmp_path: Path, edit) -> str:
    from grader.errors import RubricErrors
    from grader.rubric.load import load_rubric

    data = yaml.safe_load((ROOT / "rubrics" / "a2.yaml").read_text())
    checks = {c["id"]: c for q in data["questions"] for c in q["checks"]}
    edit(checks)
    (tmp_path / "rubrics").mkdir()
    (tmp_path / "reference").symlink_to(ROOT / "reference")
    path = tmp_path / "rubrics" / "a2.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(RubricErrors) as info:
        load_rubric(path)
    return str(info.value)


RUBRIC_MISTAKES = [
    (lambda c: c["q3.conv_flops"].update(reference="ANSWERS_NUM[q3.conv_flop]"),
     "ANSWERS_NUM has no key 'q3.conv_flop'", "did you mean 'q3.conv_flops'"),
    (lambda c: c["q3.conv_flops"]["params"]["variant_credit"].pop("macs"),
     "say what the alternative 'macs'", None),
    (lambda c: c["q3.conv_flops"]["params"]["variant_credit"].update(mac=0.5),
     "has no variant 'mac'", None),
    (lambda c: c["q5.dg_dxi"]["params"]["symbols"].pop("g"),
     "uses 'g', which is not declared", None),
    (lambda c: c["q1.W_eff"]["params"]["symbols"].update(W1={}),
     "'W1' is non-commutative in the reference but declared commutative", None),
    (lambda c: c["q5.dg_dxi"]["known_mistakes"][0].update(expression="g*(1-g"),
     "known_mistakes[0].expression", None),
    (lambda c: c["q5.dg_dxi"]["params"]["symbols"].update(g={"interval": [1, 0]}),
     "lo < hi", None),
    (lambda c: c["q2.dL_dw3"].update(reference="VARIANTS"),
     "is not a finite number", None),
    (lambda c: c["q6.tanh"]["params"].update(must_use=["sigmod"]),
     "'sigmod' is not a function answers can use", "did you mean 'sigmoid'?"),
    (lambda c: c["q6.tanh"]["params"].update(must_not_use=["sigmoid"]),
     "sigmoid cannot be both required and forbidden", None),
    (lambda c: c["q6.tanh"]["params"].update(must_use="sigmoid"),
     "'sigmoid' is not a list", None),
    (lambda c: c["q6.tanh"]["params"].update(must_use=[]),
     "should be non-empty", None),
]


@pytest.mark.parametrize("edit,phrase,suggestion", RUBRIC_MISTAKES, ids=[m[1][:40] for m in RUBRIC_MISTAKES])
def test_rubric_mistakes_in_answer_checks_are_reported_for_the_instructor(tmp_path, edit, phrase, suggestion):
    text = _rubric_errors(tmp_path, edit)
    assert phrase in text, text
    if suggestion:
        assert suggestion in text, text


def test_issue13_restating_the_question_gets_nothing_for_q6(a2_rubric):
    """submissions_example/a2/restated: a notebook and answers.yaml, right everywhere except q6, which restates
    the question (tanh(x), 1 - tanh(x)^2 for "written with sigmoid"); those two items get 0, the rest full marks."""
    from conftest import EXAMPLES

    run = grade(EXAMPLES / "a2" / "restated", a2_rubric, skip_training=True)
    failed = {r.check_id: r for r in run.results if not r.passed and not r.skipped}
    assert set(failed) == {"q6.tanh", "q6.dtanh"}, {k: r.feedback for k, r in failed.items()}
    for result in failed.values():
        text = "\n".join(result.feedback)
        assert result.score == 0 and [i.id for i in result.items] == ["wrong_form"], text
        assert "Write tanh in terms of sigmoid" in text and "uses tanh itself" in text, text
        assert "It is equal to the expected expression" in text, text  # right value, wrong form: said so
    assert run.max_score == 82 and run.score == 82 - 10
