"""Batch grading of a class folder: every submission graded, one table, one bad submission costs only itself."""
from __future__ import annotations

import contextlib
import csv
import json
import multiprocessing
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import jsonschema
import pytest

from conftest import EXAMPLES, ROOT, gradescope_schema
from grader.batch import grade_folder


def test_a_class_folder_grades_every_submission(tmp_path):
    class_dir = tmp_path / "class"
    for name in ("correct", "partial", "broken"):
        shutil.copytree(EXAMPLES / "hw4" / name, class_dir / f"student_{name}")
    (class_dir / "student_empty").mkdir()
    out = tmp_path / "out"
    events: list[tuple[str, str, int]] = []
    names, runs = grade_folder(class_dir, ROOT / "rubrics" / "hw4.yaml", out, jobs=2, seed=7, skip_training=True,
                               on_step=lambda name, step, pid, attempt: events.append((step, name, attempt)))
    scores = {n: r.score for n, r in zip(names, runs)}
    assert scores == {"student_broken": 0, "student_correct": 90, "student_empty": 0, "student_partial": 38}
    # Two grading at once at most, and beside them the processes prestarting (none if 2 jobs fill the cores).
    from grader.batch import ahead_for

    assert _most_at_once(events) == (2, 2 + ahead_for(2)), events
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
    assert (rows["alice"]["grader_errors"], rows["alice"]["undecided"], rows["alice"]["review"]) == ("0", "0", "")
    assert "Class summary" in proc.stdout
    assert "0 grader errors in 0 submissions; 0 undecided checks in 0 submissions." in proc.stdout
    report = (out / "report.html").read_text()  # the HTML class report (tests/test_report_html.py renders one)
    assert 'href="alice/results.json"' in report and 'href="bob/results.json"' in report


def test_a_killed_grading_process_costs_only_its_own_submission(tmp_path):
    """Four submissions, two at a time. `victim`'s grading process is SIGKILLed from outside (as the kernel's
    OOM killer does to a worker a hostile submission blew up) on both of its attempts; `unlucky`'s only on the
    first. The two correct ones and `unlucky` are graded as usual; `victim` gets a valid results file saying
    that grading did not finish, every check undecided and listed for review."""
    class_dir = tmp_path / "class"
    for name in ("alice", "bob", "unlucky", "victim"):
        shutil.copytree(EXAMPLES / "hw4" / "correct", class_dir / name)
    out = tmp_path / "out"
    kills: list[tuple[str, int]] = []

    def on_start(name: str, pid: int, attempt: int) -> None:
        if name == "victim" or (name == "unlucky" and attempt == 1):
            # Once it is grading (its sandbox child started), as an OOM kill would find it.
            threading.Thread(target=_kill_when_grading, args=(pid,), daemon=True).start()
            kills.append((name, attempt))

    names, runs = grade_folder(class_dir, ROOT / "rubrics" / "hw4.yaml", out, jobs=2, seed=7, skip_training=True,
                               on_start=on_start)
    assert sorted(kills) == [("unlucky", 1), ("victim", 1), ("victim", 2)]
    by_name = dict(zip(names, runs))
    for name in ("alice", "bob", "unlucky"):
        assert by_name[name].score == 90, (name, by_name[name].load_messages)
        assert all(r.status in ("passed", "manual", "skipped") for r in by_name[name].results)
    victim = by_name["victim"]
    assert victim.score == 0 and {r.status for r in victim.results} == {"undecided"}
    assert "Grading did not finish: its grading process was killed by SIGKILL" in victim.load_messages[0]
    data = json.loads((out / "victim" / "results.json").read_text())
    jsonschema.validate(data, gradescope_schema())
    assert data["score"] == 0 and "Grading did not finish" in data["output"]
    assert data["extra_data"]["statuses"]["undecided"] == len(data["tests"]) > 0
    from grader.report.table import review_summary, write_csv

    write_csv(runs, out / "grades.csv", names)
    rows = {r["submission"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    assert rows["victim"]["undecided"] == str(len(victim.results)) and "p1:undecided" in rows["victim"]["review"]
    assert rows["alice"]["review"] == "" and rows["unlucky"]["score"] == "90"
    assert review_summary(runs).startswith(f"0 grader errors in 0 submissions; {len(victim.results)} undecided checks in 1 submission")


def _kill_when_grading(pid: int, timeout: float = 120.0) -> None:
    """SIGKILL `pid` once it is grading: when it has started its sandbox child (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                break
        except OSError:
            return  # already gone
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_the_next_submission_prestarts_while_one_is_graded(tmp_path, monkeypatch):
    """-j 1, three submissions. Each next grading process spawns its sandbox child and loads the rubric while
    the previous submission is graded, and waits for the slot before it runs a check: the pool reports the
    steps in order, and at most one grading holds the slot at any time. `b_empty`'s process is SIGKILLed
    while it waits (its first attempt): only it is tried again. `c_correct`'s prestarted child is SIGKILLed
    while it waits: it had run no student code, so the grading starts a fresh one and the score stands.
    (`b` is empty, so that its second attempt costs no third full grading.)"""
    from grader import batch

    monkeypatch.setattr(batch, "ahead_for", lambda jobs: 1)  # as on any machine with 2 or more cores
    class_dir = tmp_path / "class"
    shutil.copytree(EXAMPLES / "hw4" / "partial", class_dir / "a_partial")
    (class_dir / "b_empty").mkdir()
    shutil.copytree(EXAMPLES / "hw4" / "correct", class_dir / "c_correct")
    events: list[tuple[str, str, int]] = []
    killed: list[str] = []

    def on_step(name: str, step: str, pid: int, attempt: int) -> None:
        events.append((step, name, attempt))
        if step != "ready" or ("grading", name, attempt) in events:
            return
        if name == "b_empty" and attempt == 1:
            _kill_and_wait([pid])
            killed.append("b_empty process")
        elif name == "c_correct":
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            assert children, "c_correct said it was ready, without a sandbox child"
            _kill_and_wait([int(c) for c in children])
            killed.append("c_correct child")

    names, runs = grade_folder(class_dir, ROOT / "rubrics" / "hw4.yaml", tmp_path / "out", jobs=1, seed=7,
                               skip_training=True, on_step=on_step,
                               on_done=lambda name, run: events.append(("done", name, 0)))
    assert killed == ["b_empty process", "c_correct child"], events
    scores = {n: r.score for n, r in zip(names, runs)}
    assert scores == {"a_partial": 38, "b_empty": 0, "c_correct": 90}, [r.load_messages for r in runs]
    assert not any("sandbox" in m.lower() for r in runs for m in r.load_messages), [r.load_messages for r in runs]
    assert ("grading", "b_empty", 1) not in events and ("started", "b_empty", 2) in events
    graded = [name for step, name, _ in events if step == "grading"]
    assert graded == ["a_partial", "c_correct", "b_empty"], events
    for before, after in zip(graded, graded[1:]):  # the next one was ready before the one before it was done
        assert events.index(("ready", after, 2 if after == "b_empty" else 1)) < events.index(("done", before, 0)), events
    assert _most_at_once(events) == (1, 2)  # one grading, and one more process prestarting beside it


def _most_at_once(events: list[tuple[str, str, int]]) -> tuple[int, int]:
    """From the pool's steps in order: the most processes grading at once, and the most alive at once."""
    grading: set[tuple[str, int]] = set()
    alive: set[tuple[str, int]] = set()
    most = (0, 0)
    for step, name, attempt in events:
        {"started": alive.add, "grading": grading.add}.get(step, lambda _: None)((name, attempt))
        if step == "ended":
            grading.discard((name, attempt))
            alive.discard((name, attempt))
        most = (max(most[0], len(grading)), max(most[1], len(alive)))
    return most


def _kill_and_wait(pids: list[int], timeout: float = 30.0) -> None:
    """SIGKILL `pids` and return once each is dead (a zombie not yet reaped, or gone)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX":
                    break
            except (OSError, IndexError):
                break
            time.sleep(0.01)


@pytest.mark.parametrize("level, prestarts", [("process", True), ("unprivileged-uid", False)])
def test_a_process_waiting_for_its_slot_holds_no_student_uid(tmp_path, monkeypatch, level, prestarts):
    """At the unprivileged-uid level a sandbox child holds one of the machine's student uids from its spawn
    (a blocking lock): a process waiting for its slot must not take one, or with fewer uids than processes
    the gradings holding the slots could wait for it forever. There it starts its child only once graded.
    Here the pool is gone before the slot comes: the process leaves without grading."""
    import grader.engine
    from grader import batch

    prestarted: list[str | None] = []
    monkeypatch.setattr(grader.engine, "prestart", lambda *args, **kw: prestarted.append(kw["isolation"]))
    pool_end, gate = multiprocessing.Pipe()
    pool_end.close()
    job = batch.Job(folder=str(EXAMPLES / "hw4" / "correct"), rubric_path=str(ROOT / "rubrics" / "hw4.yaml"), seed=1,
                    device="cpu", skip_training=True, isolation=level, data_dir=None,
                    results_path=str(tmp_path / "results.json"), record_path=str(tmp_path / "record.json"),
                    threads=1, environ=dict(os.environ))
    batch._grade_one(job, gate)
    assert prestarted == ([level] if prestarts else [])
    assert not (tmp_path / "record.json").exists()
    assert json.loads((tmp_path / "results.json").read_text())["extra_data"]["grading_failed"]
