"""Batch grading of a class folder: every submission graded, one table, one bad submission costs only itself."""
from __future__ import annotations

import csv
import json
import shutil

import jsonschema

from conftest import EXAMPLES, ROOT, gradescope_schema
from grader.batch import grade_folder


def test_a_class_folder_grades_every_submission(tmp_path):
    class_dir = tmp_path / "class"
    for name in ("correct", "partial", "broken"):
        shutil.copytree(EXAMPLES / "hw4" / name, class_dir / f"student_{name}")
    (class_dir / "student_empty").mkdir()
    out = tmp_path / "out"
    names, runs = grade_folder(class_dir, ROOT / "rubrics" / "hw4.yaml", out, jobs=2, seed=7, skip_training=True)
    scores = {n: r.score for n, r in zip(names, runs)}
    assert scores == {"student_broken": 0, "student_correct": 90, "student_empty": 0, "student_partial": 38}
    for name in names:
        data = json.loads((out / name / "results.json").read_text())
        jsonschema.validate(data, gradescope_schema())
        assert data["score"] == scores[name]
    from grader.report.table import write_csv

    write_csv(runs, out / "grades.csv", names)
    rows = list(csv.DictReader(open(out / "grades.csv")))
    assert [r["submission"] for r in rows] == names
    assert rows[names.index("student_partial")]["p2"] == "0" and rows[names.index("student_correct")]["p2"] == "15"


def test_grade_command_writes_a_class_table(tmp_path):
    import os
    import subprocess
    import sys

    class_dir = tmp_path / "class"
    shutil.copytree(EXAMPLES / "hw4" / "partial", class_dir / "alice")
    (class_dir / "bob").mkdir()
    out = tmp_path / "grades"
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", str(class_dir), "--assignment", "hw4", "--out", str(out),
                           "--skip-training", "--seed", "3", "-j", "1"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env={**os.environ, "COLUMNS": "160"})
    assert proc.returncode == 0, proc.stderr
    rows = {r["submission"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    assert rows["alice"]["score"] == "38" and rows["bob"]["score"] == "0"
    assert "Class summary" in proc.stdout
