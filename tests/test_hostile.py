"""Hostile submissions (submissions_example/hostile/): the grader's verdicts and files hold against each attack.

Run as root, like Gradescope: the bubblewrap level is what is tested first;
a few attacks are graded again at the `process` level (GRADER_ISOLATION), to
show that the grader survives there too and its results stay its own. The
`unprivileged-uid` level cannot run on these machines (the Python
installation lives under /root, mode 700, out of the unprivileged user's
reach); docs/threat-model.md says what it defends.

All gradings run once, two at a time, in one module fixture (in-process with
the engine, or through the command line for the attacks on the grading
process itself); the tests then read their results. Attacks on the models, or
that could reach them (`Expect.models`), are graded with the suite's whole
rubric; the others with its model checks left out
(`hostile_helpers.without_model_checks`), which spares each of their children
torch._dynamo's import and a warm-up export. The correct solution is graded
with both: each attack's other checks must score as it does under the same rubric.
"""
from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest

from grader.report.gradescope import schema
from grader.sandbox import isolation
from hostile_helpers import (ATTACKS, CORRECT, FORGED_MARKERS, HOSTILE, MARKERS, Graded, forbidden_lines,
                                   grade, grade_in_process, pids_cgroup_available, processes_named, suite_course,
                             without_model_checks)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MAX_SECONDS = 120  # per submission, wall
JOBS = [(name, level) for name, expect in ATTACKS.items() for level in expect.levels]


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Graded]:
    if not isolation.bwrap_works():
        pytest.skip("bubblewrap cannot start here; the hostile suite grades inside it")
    from grader.rubric.load import load_rubric

    root = tmp_path_factory.mktemp("hostile")
    paths = {True: suite_course(root / "course")}
    paths[False] = without_model_checks(paths[True])
    rubrics = {models: load_rubric(path) for models, path in paths.items()}
    for marker in MARKERS:
        marker.unlink(missing_ok=True)
    cgroup = pids_cgroup_available()
    jobs = [(CORRECT_MODELS, "bubblewrap"), ("correct", "bubblewrap")]
    jobs += [(n, lv) for n, lv in JOBS if cgroup or lv not in ATTACKS[n].needs_pids_cgroup]
    # Command-line gradings first: they take longest (a fresh grader process, and a wait after).
    jobs.sort(key=lambda job: job[0] not in ATTACKS or not ATTACKS[job[0]].cli)

    def run(job: tuple[str, str]) -> Graded:
        name, level = job
        workdir = root / f"{name}-{level}"
        models = _models(name)
        if name in ATTACKS and ATTACKS[name].cli:
            return grade(name, level, workdir=workdir, rubric=paths[models],
                         wait_after_s=6.0 if name == "fake_results" else 0.0)
        return grade_in_process(name, level, workdir=workdir, rubric=rubrics[models],
                                source=CORRECT if name not in ATTACKS else None)

    saved = os.environ.get("GRADER_THREADS")
    os.environ["GRADER_THREADS"] = "1"  # two gradings side by side on two cores: no thread oversubscription
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            return dict(zip(jobs, pool.map(run, jobs)))
    finally:
        if saved is None:
            os.environ.pop("GRADER_THREADS")
        else:
            os.environ["GRADER_THREADS"] = saved


CORRECT_MODELS = "correct (with the model checks)"


def _models(name: str) -> bool:
    """Whether `name` (an attack, or one of the correct solution's two gradings) is graded with the model checks."""
    return name == CORRECT_MODELS or (name in ATTACKS and ATTACKS[name].models)


@pytest.fixture(scope="module")
def baselines(graded: dict[tuple[str, str], Graded]) -> dict[bool, Graded]:
    """The correct solution's grading under each rubric (True: with the model checks): full marks in both."""
    out = {True: graded[(CORRECT_MODELS, "bubblewrap")], False: graded[("correct", "bubblewrap")]}
    for correct in out.values():
        assert correct.results["score"] == full_marks(correct) > 0, correct.results
    # The second rubric is the first less its model checks, and the rest of it as it was.
    assert set(out[False].scores) < set(out[True].scores)
    assert {"p5.LR", "p7.C3_layer.connections", "p7.LeNet.structure"} <= set(out[True].scores) - set(out[False].scores)
    assert all(out[False].scores[check][:3] == out[True].scores[check][:3] for check in out[False].scores)
    return out


@pytest.fixture
def baseline(baselines: dict[bool, Graded], name: str) -> Graded:
    """The correct solution's grading under the rubric that `name` is graded with."""
    return baselines[_models(name)]


def full_marks(g: Graded) -> float:
    return sum(t["max_score"] for t in g.results["tests"])


def _get(graded: dict[tuple[str, str], Graded], name: str, level: str) -> Graded:
    if (name, level) not in graded:
        pytest.skip(f"{name} is not graded at {level} here: only a pids cgroup contains it, and none can be made")
    return graded[(name, level)]


@pytest.mark.parametrize("name,level", JOBS)
def test_results_file_is_valid_and_the_graders_own(graded, name, level):
    g = _get(graded, name, level)
    assert g.returncode == 0, g.stderr
    jsonschema.validate(g.results, schema())
    total = sum(t["score"] for t in g.results["tests"])
    assert g.results["score"] == pytest.approx(total)
    assert 0 <= g.results["score"] <= full_marks(g)
    assert not any(m in g.results.get("output", "") for m in FORGED_MARKERS[:1])
    assert f"Student code ran isolated at level: {level}." in g.results["output"]
    # The full record (instructor side) agrees with what Gradescope gets.
    assert g.record["score"] == g.results["score"]


@pytest.mark.parametrize("name,level", JOBS)
def test_affected_checks_fail_with_a_sentence_and_the_rest_score_as_correct(graded, baseline, name, level):
    g = _get(graded, name, level)
    expect = ATTACKS[name]
    scores, correct = g.scores, baseline.scores
    assert scores.keys() == correct.keys()
    failed = dict(expect.failed)
    if "*" in failed:
        failed = {check: failed["*"] for check, (_, max_score, _, _) in correct.items() if max_score > 0}
    for check, (score, max_score, status, output) in scores.items():
        if check in failed:
            assert status == "failed" and score < max_score, (check, output)
            assert re.search(failed[check], output), (check, output)
        else:
            assert (score, max_score, status) == correct[check][:3], (check, output)
    if expect.output:
        assert re.search(expect.output, g.results["output"]), g.results["output"]


@pytest.mark.parametrize("name,level", JOBS)
def test_no_line_of_the_reference_or_rubric_reaches_the_student(graded, baseline, name, level):
    g = _get(graded, name, level)
    own = (HOSTILE / name / "hw4.py").read_text()
    leaked = [line for line in forbidden_lines(baseline.visible_text(), own) if line in g.visible_text()]
    assert not leaked


@pytest.mark.parametrize("name,level", JOBS)
def test_wall_time_is_bounded(graded, name, level):
    g = _get(graded, name, level)
    assert g.seconds < MAX_SECONDS


@pytest.mark.parametrize("level", ATTACKS["fake_results"].levels)
def test_forged_results_are_overwritten_and_the_forger_does_not_outlive_grading(graded, level):
    g = _get(graded, "fake_results", level)
    # 6 s after grading returned, past the detached forger's first write, the file is unchanged...
    assert g.results_after_wait == g.results_path.read_bytes()
    assert g.results["score"] == full_marks(g)
    # ...because nothing the submission started is still running.
    assert processes_named("hostile-forger") == []
    if level == "bubblewrap":
        # Inside bubblewrap the grader's command line (and the decoy's) cannot even be seen.
        assert g.decoy_after == g.decoy_before
    else:
        # At the process level the same code can see and write the decoy: the attack is real, and the
        # grader's own results file still ends up right because the grader writes it last.
        assert '"score": 1000.0' in g.decoy_after


def test_pickles_and_yaml_tags_are_never_loaded(graded):
    g = _get(graded, "pickle_smuggle", "bubblewrap")
    assert not any(m.exists() for m in MARKERS)
    assert g.results["score"] == full_marks(g)
    assert (g.submission / "results.pkl").exists() and (g.submission / ".OTTER_LOG").exists()


def test_injection_strings_in_answers_are_shown_as_text(graded):
    g = _get(graded, "answers_injection", "bubblewrap")
    assert not any(m.exists() for m in MARKERS)
    p4 = g.scores["p4"]
    assert "__import__('os').system('touch /tmp/grader_hostile_pwned_marker')" in p4[3]
    assert p4[0] == 0.0 and p4[2] == "passed"  # a manual item: collected for a human, never scored


def test_deleting_files_touches_only_the_sandbox_copy(graded):
    g = _get(graded, "delete_files", "bubblewrap")
    handed_in = sorted(p.name for p in (HOSTILE / "delete_files").iterdir())
    assert sorted(p.name for p in g.submission.iterdir()) == handed_in
    assert g.results["score"] == full_marks(g)
    assert (Path(__file__).resolve().parent.parent / "grader" / "child" / "main.py").exists()


def test_killing_the_parent_leaves_the_grader_running(graded):
    g = _get(graded, "kill_parent", "bubblewrap")
    assert g.returncode == 0 and g.results["score"] == full_marks(g)


def test_a_print_flood_stays_out_of_the_results(graded):
    g = _get(graded, "print_flood", "bubblewrap")
    text = g.visible_text()
    assert len(text) < 50_000 and "flood flood" not in text


def test_every_hostile_submission_is_graded():
    on_disk = sorted(p.name for p in HOSTILE.iterdir() if p.is_dir())
    assert on_disk == sorted(ATTACKS)
    for name in on_disk:
        assert (HOSTILE / name / "hw4.py").read_text().startswith('"""Hostile hw4 submission:')


@pytest.fixture(scope="module", autouse=True)
def _no_markers_left():
    yield
    for marker in MARKERS:
        if marker.exists():  # a failure above says so; do not leave it for the next run
            marker.unlink()


LEAVES_PROCESSES = '''import subprocess

def few():
    for _ in range(2):
        subprocess.Popen(["sleep", "30"])
    return 2

def many():
    for _ in range(12):
        subprocess.Popen(["sleep", "30"])
    return 12
'''


def test_processes_left_behind_are_stopped_and_many_fail_the_request_without_a_cgroup(tmp_path, monkeypatch):
    """Without a cgroup the sandbox counts its process group: the same rule as the fork_bomb case above."""
    from grader.sandbox import cgroups
    from grader.sandbox.client import Sandbox

    monkeypatch.setattr(cgroups, "create", lambda **kwargs: None)
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "hw4.py").write_text(LEAVES_PROCESSES)
    sandbox = Sandbox(submission_dir=folder, code_file=folder / "hw4.py", answers_file=None, isolation_level="process")
    try:
        assert sandbox.start().ok
        reply = sandbox.request({"op": "call", "target": "few", "args": []})
        assert reply.ok and reply.value["value"] == 2  # a couple of stray helpers: stopped, the answer stands
        assert len(sandbox._members()) == 1  # only the child itself is left
        reply = sandbox.request({"op": "call", "target": "many", "args": []})
        assert not reply.ok and "left 12 processes running when it returned (a fork bomb?)" in reply.message
        assert not sandbox.alive()
    finally:
        sandbox.close()
