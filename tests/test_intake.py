"""Issue 13 (cause 5, cause 6): submission intake per file, bounded answers, evaluation labels always hidden.

Odd files (links, FIFOs, devices, huge or oddly named files) are refused in
the parent with a sentence each and the rest is graded; answers files are
read with bounded size, depth, node count and integer digits, a bad value
costing only its own answer; the test labels are protected whenever a
check's kind trains or evaluates, whatever the rubric's `training` flag.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import stat
from pathlib import Path

import pytest

from conftest import ROOT, make_submission
from grader.child.loading.answers import AnswersError, MAX_INT_DIGITS, answers_from_cells, read_answers_yaml
from grader.loading.files import IntakeLimits, find_files, take_in

CORRECT = ROOT / "submissions_example" / "hw4" / "correct"
REFERENCE = ROOT / "reference" / "hw4.py"


# --- intake ---------------------------------------------------------------------------------------------------

def _take(folder: Path, tmp_path: Path, **limits):
    return take_in(folder, tmp_path / "taken", IntakeLimits(**limits) if limits else IntakeLimits())


def test_odd_files_are_refused_each_with_a_sentence_and_the_rest_is_taken_in(tmp_path):
    folder = make_submission(tmp_path, {"hw4.py": "x = 1\n", "answers.yaml": "q1: 2\n", "notes.txt": "mine\n"})
    os.symlink("/etc/passwd", folder / "passwd.txt")
    os.symlink(REFERENCE, folder / "solution.py")
    os.mkfifo(folder / "pipe")
    (folder / "original.txt").write_text("shared")
    os.link(folder / "original.txt", folder / "linked.txt")
    (folder / "-rf").write_text("option?")
    (folder / "bell\x07.txt").write_text("ding")
    (folder / ("long" * 40 + ".txt")).write_text("long name")
    with open(os.path.join(os.fsencode(folder), b"latin1-\xe9.txt"), "w") as f:  # not UTF-8: bytes
        f.write("caf\xe9")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock"))
    os.symlink("/tmp", folder / "tmp_link")
    try:
        intake = _take(folder, tmp_path)
    finally:
        sock.close()
    assert sorted(intake.accepted) == ["answers.yaml", "hw4.py", "notes.txt"]
    assert sorted(p.name for p in intake.folder.iterdir()) == ["answers.yaml", "hw4.py", "notes.txt"]
    why = intake.refused
    assert why["passwd.txt"] == "passwd.txt is a symbolic link; upload the file itself."
    assert why["solution.py"] == "solution.py is a symbolic link; upload the file itself."
    assert why["tmp_link"] == "tmp_link is a symbolic link; upload the file itself."
    assert why["pipe"] == "pipe is a FIFO (named pipe); upload only regular files."
    assert why["sock"] == "sock is a socket; upload only regular files."
    assert why["original.txt"] == why["linked.txt"].replace("linked", "original") \
        == "original.txt is a hard link to another file; upload a copy of the file itself."
    assert "its name starts with '-'" in why["-rf"]
    assert "control characters" in why["bell\\x07.txt"]
    assert "not valid UTF-8" in why["latin1-\\udce9.txt"]
    assert any("characters long (at most 128)" in s for s in why.values())
    # Each sentence reaches the run's load messages, control characters escaped.
    assert all(m.startswith("Not graded: ") and "\x07" not in m for m in intake.messages())


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_is_refused_without_being_opened(tmp_path):
    folder = make_submission(tmp_path, {"hw4.py": "x = 1\n"})
    os.mknod(folder / "zero", 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    intake = _take(folder, tmp_path)
    assert intake.accepted == ("hw4.py",)
    assert intake.refused["zero"] == "zero is a character device; upload only regular files."


def test_size_count_and_depth_caps(tmp_path):
    folder = make_submission(tmp_path, {"hw4.py": "x = 1\n", "a.bin": "a" * 3000, "b.bin": "b" * 900, "c.bin": "c" * 900})
    deep = folder
    for i in range(4):
        deep = deep / f"d{i}"
        deep.mkdir()
        (deep / "f.txt").write_text("deep")
    intake = _take(folder, tmp_path, max_file_bytes=2000, max_total_bytes=1500, max_files=4, max_depth=2)
    assert "a.bin is 0.0 MB, over the 0.0 MB limit for one file" in intake.refused["a.bin"]
    assert "pass the 0.0 MB limit for all files together" in intake.refused["c.bin"]
    assert "folders may be nested at most 2 deep" in intake.refused["d0/d1/d2/"]
    assert sorted(intake.accepted) == ["b.bin", "d0/d1/f.txt", "d0/f.txt", "hw4.py"]
    (tmp_path / "many").mkdir()
    many = make_submission(tmp_path / "many", {f"f{i:02d}.txt": "x" for i in range(12)})
    taken = take_in(many, tmp_path / "many_taken", IntakeLimits(max_files=10))
    assert len(taken.accepted) == 10 and len(taken.refused) == 2
    assert "at most 10 files" in taken.refused["f11.txt"]
    (tmp_path / "crowd").mkdir()
    crowd = make_submission(tmp_path / "crowd", {"hw4.py": "x = 1\n"})
    sub = crowd / "fifos"
    sub.mkdir()
    for i in range(50):
        os.mkfifo(sub / f"p{i}")
    taken = take_in(crowd, tmp_path / "crowd_taken", IntakeLimits(max_files=10))
    assert taken.accepted == ("hw4.py",)
    assert taken.refused["..."] == "The submission has more than 40 files and folders; those in fifos and after it were not read."


def test_a_refused_code_file_is_named_when_the_code_is_looked_for(tmp_path):
    folder = make_submission(tmp_path, {"answers.yaml": "q1: 2\n"})
    os.symlink(REFERENCE, folder / "hw4.py")
    intake = _take(folder, tmp_path)
    files = find_files(intake.folder, ["hw4.py", "hw4.ipynb"], ["answers.yaml"], refused=intake.refused)
    assert files.code is None and files.answers == intake.folder / "answers.yaml"
    assert files.code_refused == "hw4.py is a symbolic link; upload the file itself."
    # Without intake (the command line's guess of the assignment), a link is never followed either.
    assert find_files(folder, ["hw4.py"], []).code is None


def test_grading_a_symlinked_code_file_costs_the_code_checks_with_a_sentence(tmp_path):
    """Was "internal error" with an empty test list; now the code checks fail and the answers still count."""
    from grader.engine import grade_submission
    from grader.rubric.load import load_rubric

    folder = make_submission(tmp_path, {"answers.yaml": (CORRECT / "answers.yaml").read_text()})
    os.symlink(REFERENCE, folder / "hw4.py")  # the reference itself: full marks, if it were followed
    os.mkfifo(folder / "notes")
    rubric = load_rubric(ROOT / "rubrics" / "hw4.yaml")
    run = grade_submission(folder, rubric, seed=1, skip_training=True, isolation="process")
    messages = "\n".join(run.load_messages)
    assert "Not graded: hw4.py is a symbolic link; upload the file itself." in messages
    assert "Not graded: notes is a FIFO (named pipe); upload only regular files." in messages
    code_checks = [r for r in run.results if r.max_score > 0 and not r.skipped]
    assert code_checks and all(r.score == 0 for r in code_checks)
    assert all("No code file to test: hw4.py is a symbolic link" in " ".join(r.feedback) for r in code_checks)
    p4 = next(r for r in run.results if r.check_id == "p4")
    assert "Missing" not in " ".join(p4.feedback) and "could not be read" not in " ".join(p4.feedback)


# --- bounded answers --------------------------------------------------------------------------------------------

def test_a_5000_digit_number_costs_only_its_own_answer(tmp_path):
    path = tmp_path / "answers.yaml"
    path.write_text("q1: 0.25\nq2: " + "7" * 5000 + "\nq3:\n  a: 0x" + "f" * (MAX_INT_DIGITS + 1) + "\n  b: 12\n")
    answers = read_answers_yaml(path)
    assert answers["q1"] == 0.25 and answers["q3.b"] == 12
    assert answers["q2"] == f"(unreadable answer for 'q2' at line 2: a number of 5,000 digits; at most {MAX_INT_DIGITS} are read)"
    assert answers["q3.a"].startswith("(unreadable answer for 'q3.a' at line 4: a number of")
    # A number of MAX_INT_DIGITS digits is still a number, computed exactly.
    path.write_text("q1: " + "9" * MAX_INT_DIGITS + "\n")
    assert read_answers_yaml(path)["q1"] == 10**MAX_INT_DIGITS - 1


@pytest.mark.parametrize("bad", ["2024-13-45", "!!int abc", "!!float [1, 2]", "!!int [1, 2]", "!!timestamp 2024-02-30"])
def test_a_value_its_tag_cannot_build_costs_only_its_own_answer(tmp_path, bad):
    path = tmp_path / "answers.yaml"
    path.write_text(f"q1: {bad}\nq2: 4\n")
    answers = read_answers_yaml(path)
    assert answers["q2"] == 4 and "unreadable answer for 'q1' at line 1" in answers["q1"]


def test_python_tags_are_still_refused_as_invalid_yaml(tmp_path):
    path = tmp_path / "answers.yaml"
    path.write_text("q1: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(AnswersError, match=r"answers\.yaml is not valid YAML at line 1"):
        read_answers_yaml(path)


@pytest.mark.parametrize("text,phrase", [
    ("q1: 1\nq2: " + "[" * 10_000 + "]" * 10_000 + "\n", "nested more than 32 deep at line 2"),
    ("q1:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 40)) + "  " * 40 + "v: 1\n", "nested more than 32 deep at line"),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
     + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(9)),
     "aliases (*name) at line 5 expand to more than 50,000 values"),
    ("a: &x [1, *x]\n", "an alias at line 1 refers to a value that contains it"),
    ("q: [" + ", ".join(["1"] * 60_000) + "]\n", "more than 50,000 values (at line 1)"),
])
def test_structurally_unreadable_yaml_is_one_message_naming_the_line(tmp_path, text, phrase):
    path = tmp_path / "answers.yaml"
    path.write_text(text)
    with pytest.raises(AnswersError, match=r"answers\.yaml cannot be read: ") as info:
        read_answers_yaml(path)
    assert phrase in str(info.value)


def test_aliases_within_bounds_still_work(tmp_path):
    path = tmp_path / "answers.yaml"
    path.write_text("shared: &v 0.5\nq1: *v\nq2: {a: *v}\n")
    assert read_answers_yaml(path) == {"shared": 0.5, "q1": 0.5, "q2.a": 0.5}


def test_the_answers_cell_has_the_same_bounds():
    cell = "ANSWERS = {'q1': 3, 'q2': " + "9" * 5000 + ", 'q3': {'a': -2.5, 'b': [1, 2]}}\n"
    answers = answers_from_cells(["%matplotlib inline", cell])
    assert answers["q1"] == 3 and answers["q3.a"] == -2.5 and answers["q3.b"] == [1, 2]
    assert answers["q2"].startswith("(unreadable answer for 'q2' at line 1: a number of 5,000 digits")
    with pytest.raises(AnswersError, match="line 1: ANSWERS nests more than 32 levels deep"):
        answers_from_cells(["ANSWERS = {'q1': " + "[" * 60 + "]" * 60 + "}"])
    with pytest.raises(AnswersError, match="more than 50,000 values"):
        answers_from_cells(["ANSWERS = {'q1': [" + ", ".join(["1"] * 60_000) + "]}"])
    with pytest.raises(AnswersError, match="plain dict of literals"):
        answers_from_cells(["ANSWERS = {'q1': __import__('os').getcwd()}"])


# --- evaluation labels ------------------------------------------------------------------------------------------

def _without_training_flags(rubric):
    """The rubric as an instructor might write it: `training: true` left out of every check."""
    return dataclasses.replace(rubric, questions=[
        dataclasses.replace(q, checks=[dataclasses.replace(c, training=False) for c in q.checks]) for q in rubric.questions])


def test_labels_are_protected_by_the_check_kind_not_the_rubric_flag():
    from grader.engine import protected_paths
    from grader.rubric.load import load_rubric
    from grader.training.label_files import evaluation_label_files

    rubric = load_rubric(ROOT / "rubrics" / "hw4.yaml")
    labels = evaluation_label_files(None)
    if not labels:
        pytest.skip("no dataset with test labels on this machine")
    unflagged = _without_training_flags(rubric)
    assert any(c.kind == "training" for c in unflagged.checks) and not any(c.training for c in unflagged.checks)
    assert set(labels) <= set(protected_paths(unflagged, []))
    # A rubric with no check that trains or evaluates keeps the label files out of the list.
    plain = dataclasses.replace(unflagged, questions=[
        dataclasses.replace(q, checks=[c for c in q.checks if c.kind not in ("training", "training_loop")]) for q in unflagged.questions])
    assert not set(labels) & set(protected_paths(plain, []))


READ_LABELS = '''
def read_labels(path):
    with open(path, "rb") as f:
        return len(f.read())
'''


def test_a_submission_cannot_open_the_labels_when_the_flag_is_left_out(tmp_path):
    from grader.engine import protected_paths
    from grader.rubric.load import load_rubric
    from grader.sandbox.client import Sandbox
    from grader.sandbox.isolation import bwrap_works
    from grader.training.label_files import evaluation_label_files

    if not bwrap_works():
        pytest.skip("bubblewrap cannot start here")
    labels = [p for p in evaluation_label_files(None) if p.is_file()]
    if not labels:
        pytest.skip("no label file on this machine")
    rubric = load_rubric(ROOT / "rubrics" / "hw4.yaml")
    unflagged = _without_training_flags(rubric)
    folder = make_submission(tmp_path, {"hw4.py": READ_LABELS})
    sandbox = Sandbox(submission_dir=folder, code_file=folder / "hw4.py", answers_file=None,
                      isolation_level="bubblewrap", protected=protected_paths(unflagged, []))
    try:
        assert sandbox.start().ok
        for label_file in labels:
            reply = sandbox.request({"op": "call", "target": "read_labels", "args": [str(label_file)]})
            assert not reply.ok or reply.value.get("value") in (0, None), (label_file, reply)
    finally:
        sandbox.close()


def test_a_refused_answers_file_is_named_in_every_answer_check(tmp_path):
    """No code and a symlinked answers.yaml: no sandbox is needed, and each answer check says why it has nothing."""
    from grader.engine import grade_submission
    from grader.rubric.load import load_rubric

    real = tmp_path / "elsewhere.yaml"
    real.write_text((ROOT / "submissions_example" / "a2" / "correct" / "answers.yaml").read_text())
    folder = make_submission(tmp_path, {})
    os.symlink(real, folder / "answers.yaml")
    rubric = load_rubric(ROOT / "rubrics" / "a2.yaml")
    run = grade_submission(folder, rubric, seed=1, skip_training=True, isolation="process")
    assert "Not graded: answers.yaml is a symbolic link; upload the file itself." in run.load_messages
    numeric = [r for r in run.results if next(c for c in rubric.checks if c.id == r.check_id).kind == "numeric"]
    assert numeric and all(r.score == 0 for r in numeric)
    for r in numeric:
        assert "Your answers could not be read" in " ".join(r.feedback)
        assert "answers.yaml is a symbolic link; upload the file itself." in " ".join(r.feedback)
