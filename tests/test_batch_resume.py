"""Resumable batches (issue 12): stored gradings keyed by what decides them; a killed batch loses nothing finished."""
from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROOT
from grader.batch import (KEY, RECORD, RESULTS, Options, course_digest, plan, store, stored_run, submission_key,
                          taken_in, unfinished_run)
from grader.loading.files import IntakeLimits

HW4 = ROOT / "rubrics" / "hw4.yaml"


@functools.lru_cache(maxsize=1)
def _course() -> str:
    return course_digest(HW4)


def _key(folder: Path, options: Options = Options(seed=1), course: str | None = None) -> str:
    with taken_in(folder, IntakeLimits()) as intake:
        return submission_key(intake, course or _course(), options)


def test_the_key_follows_what_decides_a_grade(tmp_path):
    folder = tmp_path / "alice"
    shutil.copytree(EXAMPLES / "hw4" / "partial", folder)
    base = _key(folder)
    assert _key(folder) == base  # nothing changed: the same key, so a rerun reuses the grading
    cases = {
        "another seed": lambda: _key(folder, Options(seed=2)),
        "training on": lambda: _key(folder, Options(seed=1, skip_training=True)),
        "another device": lambda: _key(folder, Options(seed=1, device="cuda")),
        "another course": lambda: _key(folder, course="0" * 64),
    }
    for what, key in cases.items():
        assert key() != base, what
    (folder / "notes.txt").write_text("a new file")
    with_file = _key(folder)
    assert with_file != base
    (folder / "notes.txt").write_text("a new fil3")  # same size, other content
    assert _key(folder) not in (base, with_file)
    (folder / "notes.txt").unlink()
    os.symlink("/etc/hostname", folder / "link.py")  # refused by intake; the refusal is in the feedback, so in the key
    assert _key(folder) != base


def test_a_did_not_finish_record_is_stored_without_a_key_and_graded_again(tmp_path, hw4_rubric):
    out = tmp_path / "out"
    run = unfinished_run(hw4_rubric, tmp_path / "victim", "its grading process was killed by SIGKILL")
    store(out, "victim", run, "k" * 64)
    assert (out / "victim" / RECORD).exists() and json.loads((out / "victim" / RESULTS).read_text())["score"] == 0
    assert not (out / "victim" / KEY).exists()  # a grader fault: a rerun grades it again
    assert stored_run(out, "victim", "k" * 64) is None


def test_a_lost_results_file_is_rewritten_from_its_record(tmp_path, hw4_rubric):
    from grader.results import GradingRun

    out = tmp_path / "out"
    run = GradingRun(assignment="hw4", submission="alice", seed=1)
    store(out, "alice", run, "a" * 64)
    (out / "alice" / RESULTS).unlink()
    assert stored_run(out, "alice", "b" * 64) is None  # another key: not reused
    again = stored_run(out, "alice", "a" * 64)
    assert again is not None and again.submission == "alice"
    assert json.loads((out / "alice" / RESULTS).read_text())["score"] == 0


def test_regrade_plans_every_submission_again(tmp_path, hw4_rubric):
    from grader.results import GradingRun

    class_dir, out = tmp_path / "class", tmp_path / "out"
    shutil.copytree(EXAMPLES / "hw4" / "partial", class_dir / "alice")
    (class_dir / "bob").mkdir()
    options = Options(seed=3, skip_training=True)
    keys = plan([class_dir / "alice", class_dir / "bob"], out, HW4, options).keys
    store(out, "alice", GradingRun(assignment="hw4", submission="alice", seed=3), keys["alice"])
    resumed = plan([class_dir / "alice", class_dir / "bob"], out, HW4, options)
    assert [f.name for f in resumed.to_grade] == ["bob"] and list(resumed.reused) == ["alice"]
    forced = plan([class_dir / "alice", class_dir / "bob"], out, HW4, options, regrade=True)
    assert [f.name for f in forced.to_grade] == ["alice", "bob"] and not forced.reused


@pytest.mark.slow
def test_a_batch_killed_part_way_reruns_without_regrading_what_it_finished(tmp_path):
    """`grader grade` is SIGKILLed (its whole process group, as a closed laptop or a killed job would) once the
    first of two submissions is stored; the rerun, without --seed, reuses the first untouched and grades the
    second. Both end with the scores a batch run straight through gives (test_batch.py)."""
    class_dir, out = tmp_path / "class", tmp_path / "grades"
    shutil.copytree(EXAMPLES / "hw4" / "partial", class_dir / "a_partial")
    shutil.copytree(EXAMPLES / "hw4" / "broken", class_dir / "b_broken")
    command = [sys.executable, "-m", "grader", "grade", str(class_dir), "--assignment", "hw4", "--out", str(out),
               "--skip-training", "-j", "1"]
    env = {**os.environ, "COLUMNS": "160"}
    first = subprocess.Popen([*command, "--seed", "5"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while not (out / "a_partial" / KEY).exists():
            assert first.poll() is None, first.stdout.read().decode() if first.stdout else ""
            assert time.monotonic() < deadline, "the first submission was never stored"
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert not (out / "b_broken" / KEY).exists(), "killed too late: the second submission had finished"
    assert json.loads((out / "b_broken" / RESULTS).read_text())["extra_data"]["grading_failed"]  # did not finish
    stored = {p: ((out / "a_partial" / p).stat().st_ino, (out / "a_partial" / p).stat().st_mtime_ns)
              for p in (KEY, RECORD, RESULTS)}

    rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "seed 5, from the earlier run" in rerun.stdout
    assert "1 submission(s) unchanged since their stored grading: reused" in rerun.stdout
    assert "a_partial:" not in rerun.stdout and "b_broken: 0/" in rerun.stdout  # only the unfinished one was graded
    assert stored == {p: ((out / "a_partial" / p).stat().st_ino, (out / "a_partial" / p).stat().st_mtime_ns)
                      for p in (KEY, RECORD, RESULTS)}
    rows = (out / "grades.csv").read_text().splitlines()
    assert rows[1].startswith("a_partial,38") and rows[2].startswith("b_broken,0"), rows
    assert (out / "b_broken" / KEY).exists()
