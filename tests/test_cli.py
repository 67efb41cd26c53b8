"""End-to-end: the real `grader` command on the examples and on bad input."""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
import sys

import jsonschema

from conftest import EXAMPLES, ROOT, gradescope_schema

GRADER = [sys.executable, "-m", "grader"]


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*GRADER, *args], capture_output=True, text=True, cwd=cwd or ROOT, timeout=300,
                          env={**os.environ, "COLUMNS": "160"})


def test_check_correct_writes_full_marks_in_a_valid_results_file(tmp_path):
    out = tmp_path / "r.json"
    proc = run_cli("check", str(EXAMPLES / "hw4" / "correct"), "--assignment", "hw4", "--results", str(out), "--seed", "5",
                   "--skip-training")  # training end to end: tests/test_examples_ds5220.py
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    jsonschema.validate(data, gradescope_schema())
    assert data["score"] == 90 and isinstance(data["execution_time"], float)
    assert all(t["name"].split()[0] == t["name"].split()[0].strip() for t in data["tests"])
    assert data["tests"][0]["name"].startswith("p1 ")
    p4 = next(t for t in data["tests"] if t["name"].startswith("p4 "))
    assert p4["max_score"] == 0 and "manual grading" in p4["output"]
    assert "Total: 90 / 90" in proc.stdout


def test_assignment_is_detected_from_file_names(tmp_path):
    out = tmp_path / "r.json"
    proc = run_cli("check", str(EXAMPLES / "hw4" / "partial"), "--results", str(out), "--skip-training", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["score"] == 38
    failed = [t["name"].split()[0] for t in data["tests"] if t["status"] == "failed"]
    assert "p2" in failed and all(t["output"] for t in data["tests"] if t["status"] == "failed")


def test_a_missing_folder_is_a_usage_error_and_still_leaves_valid_results(tmp_path):
    out = tmp_path / "r.json"
    proc = run_cli("check", str(tmp_path / "nope"), "--assignment", "hw4", "--results", str(out))
    assert proc.returncode == 2
    assert "is not a folder" in proc.stderr
    jsonschema.validate(json.loads(out.read_text()), gradescope_schema())


def test_an_empty_submission_grades_to_zero_with_a_message(tmp_path):
    sub = tmp_path / "empty"
    sub.mkdir()
    out = tmp_path / "r.json"
    proc = run_cli("check", str(sub), "--assignment", "hw4", "--results", str(out))
    assert proc.returncode == 0
    data = json.loads(out.read_text())
    assert data["score"] == 0 and "No code file found: expected one of hw4.py, hw4.ipynb" in data["output"]


def test_unknown_assignment_suggests_the_close_one(tmp_path):
    proc = run_cli("check", str(EXAMPLES / "hw4" / "correct"), "--assignment", "hw_4")
    assert proc.returncode == 3
    assert "did you mean 'hw4'" in proc.stderr


def test_rubric_validate_reports_ok():
    proc = run_cli("rubric", "validate", "rubrics/hw4.yaml")
    assert proc.returncode == 0 and "ok" in proc.stdout


def test_a_killed_grader_still_leaves_a_valid_did_not_finish_results_file(tmp_path):
    """`grader check --results` writes a "did not finish" file before grading; SIGKILL (an OOM kill of the
    grader itself) leaves that file, valid, in place of the real one."""
    import signal
    import time

    out = tmp_path / "results" / "r.json"
    proc = subprocess.Popen([*GRADER, "check", str(EXAMPLES / "hw4" / "correct"), "--assignment", "hw4", "--results",
                             str(out), "--seed", "5", "--skip-training", "-q"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert out.exists() and proc.poll() is None, "the results file should be written before grading starts"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    data = json.loads(out.read_text())
    jsonschema.validate(data, gradescope_schema())
    assert data["score"] == 0 and "grading did not finish" in data["output"]
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]  # no temp file left beside it


def test_check_prints_a_student_view_without_hidden_checks(tmp_path):
    import yaml

    data = yaml.safe_load((ROOT / "rubrics" / "hw4.yaml").read_text())
    course = tmp_path / "course"
    (course / "rubrics").mkdir(parents=True)
    import shutil

    shutil.copytree(ROOT / "reference", course / "reference")
    shutil.copytree(ROOT / "rubrics" / "hw4_tests", course / "rubrics" / "hw4_tests")  # p6.relu's unittest file
    hidden = data["questions"][1]["checks"][0]
    hidden["visibility"] = "hidden"
    (course / "rubrics" / "hw4.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    args = ("check", str(EXAMPLES / "hw4" / "partial"), "--rubric", str(course / "rubrics" / "hw4.yaml"), "--seed", "5",
            "--skip-training")
    student = run_cli(*args, "--as-student")
    instructor = run_cli(*args)
    assert student.returncode == 0 == instructor.returncode, student.stderr
    # p2 (15 points, failed by the partial submission) is hidden: the student's view neither shows it nor counts it.
    assert "Total: 38 / 75" in student.stdout and "avgpool_as_conv" not in student.stdout
    assert "Total: 38 / 90 (students see 38 / 75: hidden checks left out)" in instructor.stdout
    assert "avgpool_as_conv" in instructor.stdout


def test_leaving_without_teardown_still_does_what_an_exit_owes(tmp_path):
    """`grader.cli._leave` skips the interpreter's teardown (1.5-2 s after torch._dynamo), but a thread still
    running finishes, atexit handlers run, buffered output is all written, and the exit code is kept."""
    code = textwrap.dedent(f'''
        import atexit, sys, threading, time
        from pathlib import Path
        from grader.cli import _leave
        out = Path({str(tmp_path)!r})
        atexit.register(lambda: (out / "atexit").write_text("ran"))
        def late():
            time.sleep(0.3)
            (out / "thread").write_text("done")
        threading.Thread(target=late).start()
        sys.stdout.write("x" * 200000 + "end")
        _leave(7)
        print("not reached")
    ''')
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == "x" * 200000 + "end"
    assert (tmp_path / "atexit").read_text() == "ran" and (tmp_path / "thread").read_text() == "done"
