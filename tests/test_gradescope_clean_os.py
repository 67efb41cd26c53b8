"""Gradescope's setup.sh and run_autograder, run for real in a clean Debian root (``make gradescope-check``).

The other Gradescope tests run run_autograder in this machine's own
environment; here nothing is borrowed from it. A debootstrapped Debian
bookworm (minbase: no Python, no bubblewrap; cached between runs,
scripts/clean_os.py) gets the zip made by ``grader gradescope build`` in
/autograder/source, setup.sh runs there as root (apt, the venv, the pinned
installs, the user, the permissions, the rubric validation), then
run_autograder grades, as Gradescope would, a correct submission (with
training), a partial one and hostile ones:

* at the bubblewrap level (setup.sh installed it, and it works inside the root);
* at the unprivileged-uid level, with bubblewrap present but unable to start
  (its binary replaced by /bin/false, as where a container forbids
  namespaces): student code then runs as grader-student, which must be able
  to run the venv's Python.

PyTorch's CPU index cannot be reached from these machines, so setup.sh is
told (GRADER_TORCH_WHEELS, for this test only) to take torch from the wheels
on disk (/opt/wheels, or GRADER_CLEAN_OS_WHEELS). Slow (minutes; the first
run also debootstraps), so it is not part of ``make test``: the module only
runs when GRADER_CLEAN_OS=1, which ``make gradescope-check`` sets. Then it
fails, never skips, when it cannot run, saying why.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "submissions_example"
HOSTILE = EXAMPLES / "hostile"
sys.path.insert(0, str(ROOT / "scripts"))

if os.environ.get("GRADER_CLEAN_OS") != "1":
    pytest.skip("the clean-OS Gradescope check runs with `make gradescope-check` (GRADER_CLEAN_OS=1), "
                "not in `make test`", allow_module_level=True)

import clean_os  # noqa: E402  (scripts/clean_os.py)

from grader.report.gradescope import schema  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
ASSIGNMENT = "hw4"
SEED = "1"


class Env:
    """One clean root with setup.sh run in it; gradings made on demand and kept (one per submission and level)."""

    def __init__(self, tmp: Path) -> None:
        wheels = Path(os.environ.get("GRADER_CLEAN_OS_WHEELS") or clean_os.DEFAULT_WHEELS)
        if not any(wheels.glob("torch-*.whl")):
            pytest.fail(f"no torch wheel in {wheels}: set GRADER_CLEAN_OS_WHEELS to a folder with a CPU torch "
                        "wheel for the root's Python 3.11 (PyTorch's index is not reachable from here)")
        try:
            clean_os.preflight()
            clean_os.base_root()
        except clean_os.CleanOSUnavailable as exc:
            pytest.fail(f"the clean-OS check cannot run here: {exc}")
        self.tmp = tmp
        self.zip = tmp / f"{ASSIGNMENT}_autograder.zip"
        build = subprocess.run([sys.executable, "-m", "grader", "gradescope", "build", "--assignment", ASSIGNMENT,
                                "-o", str(self.zip)], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert build.returncode == 0, build.stderr
        self.root = clean_os.CleanRoot(tmp, wheels=wheels)
        self.root.install_zip(self.zip)
        self.setup = self.root.setup(torch_wheels=wheels)
        self._graded: dict[tuple[str, str, bool], tuple[clean_os.Result, dict, dict]] = {}

    def grade(self, folder: Path, level: str, *, training: bool = False) -> tuple[clean_os.Result, dict, dict]:
        """(the run, results.json, what was seen 6 s after run_autograder returned) for one submission."""
        key = (str(folder), level, training)
        if key not in self._graded:
            if self.setup.returncode != 0:
                pytest.fail(f"setup.sh failed in the clean root, nothing can be graded:\n{self.setup.tail()}")
            self.root.put_submission(folder)
            args = ["--seed", SEED] + ([] if training else ["--skip-training"])
            # After the run, still inside the root: wait past a detached forger's next write, then say what is
            # left running (pid, uid, name) and the results file's bytes, to compare with the ones read at once.
            after = ("sleep 6; sha256sum /autograder/results/results.json; "
                     "for p in /proc/[0-9]*; do [ -r $p/status ] && echo proc $(basename $p) "
                     "$(awk '/^Uid:/{print $2}' $p/status) $(cat $p/comm); done")
            script = ("/autograder/run_autograder " + " ".join(args)
                      + "; sha256sum /autograder/results/results.json; " + after)
            run = self.root.run(f"cd /autograder && {script}", hide_bwrap=(level == "unprivileged-uid"),
                                timeout=2400)
            assert run.returncode == 0, run.tail()
            results = self.root.results()
            jsonschema.validate(results, schema())
            sums = [ln.split()[0] for ln in run.stdout.splitlines() if ln.endswith("results.json")]
            procs = [ln.split(maxsplit=3)[1:] for ln in run.stdout.splitlines() if ln.startswith("proc ")]
            self._graded[key] = (run, results, {"sums": sums, "procs": procs})
        return self._graded[key]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    e = Env(tmp_path_factory.mktemp("clean-os"))
    yield e
    e.root.remove()


def _check_on_host(folder: Path, tmp: Path) -> dict:
    """What `grader check` gives the same submission on this machine, skipping training (the expected scores)."""
    out = tmp / f"check-{folder.name}.json"
    proc = subprocess.run([sys.executable, "-m", "grader", "check", str(folder), "--assignment", ASSIGNMENT,
                           "--seed", SEED, "--skip-training", "-q", "--results", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def _uid(env: Env, name: str) -> str:
    return env.root.run(f"id -u {name}").stdout.strip()


def test_setup_sh_completes_in_a_fresh_debian_root(env):
    assert env.setup.returncode == 0, env.setup.tail()
    assert "setup: ready (torch" in env.setup.stdout
    # Everything setup.sh promises is there: bubblewrap and Python from apt, the venv, the user, the locks.
    check = env.root.run("command -v bwrap && /autograder/venv/bin/python -c 'import sys, torch, numpy, sympy; "
                         "print(sys.version_info[:2] >= (3, 11))' && id -u grader-student "
                         "&& stat -c '%a %U' /autograder/source/reference /autograder/source/rubrics")
    assert check.returncode == 0, check.tail()
    lines = check.stdout.split()
    assert "True" in lines and lines[-4:] == ["700", "root", "700", "root"]


def test_the_student_user_can_run_the_venvs_python_but_not_read_the_answers(env):
    ok = env.root.run("runuser -u grader-student -- /autograder/venv/bin/python -I -c "
                      "'import torch, numpy; print(\"student python ok\")'")
    assert ok.returncode == 0 and "student python ok" in ok.stdout, ok.tail()
    denied = env.root.run(f"runuser -u grader-student -- cat /autograder/source/reference/{ASSIGNMENT}.py")
    assert denied.returncode != 0 and "Permission denied" in denied.stderr


def test_correct_submission_gets_full_marks_with_training_at_the_bubblewrap_level(env):
    run, results, _ = env.grade(EXAMPLES / ASSIGNMENT / "correct", "bubblewrap", training=True)
    assert results["score"] == sum(t["max_score"] for t in results["tests"]) > 0, run.tail()
    assert all(t["status"] == "passed" for t in results["tests"])
    assert "Student code ran isolated at level: bubblewrap." in results["output"]
    assert "grader /autograder/source/grader" in run.stdout  # the zip's grader, installed by setup.sh


@pytest.mark.parametrize("level", ["bubblewrap", "unprivileged-uid"])
def test_partial_submission_gets_the_scores_grader_check_gives(env, level, tmp_path):
    partial = EXAMPLES / ASSIGNMENT / "partial"
    run, results, _ = env.grade(partial, level)
    expected = _check_on_host(partial, tmp_path)
    assert f"Student code ran isolated at level: {level}." in results["output"], run.tail()
    assert 0 < results["score"] == expected["score"] < sum(t["max_score"] for t in results["tests"])
    assert [(t["name"], t["score"]) for t in results["tests"]] == [(t["name"], t["score"]) for t in expected["tests"]]


def test_correct_submission_runs_as_grader_student_when_bubblewrap_cannot_start(env, tmp_path):
    correct = EXAMPLES / ASSIGNMENT / "correct"
    run, results, _ = env.grade(correct, "unprivileged-uid")
    assert "Student code ran isolated at level: unprivileged-uid." in results["output"], run.tail()
    # Every check scores as on this machine: the child, as grader-student, started from the venv and answered.
    expected = _check_on_host(correct, tmp_path)
    assert results["score"] == expected["score"] > 0
    assert [(t["name"], t["score"]) for t in results["tests"]] == [(t["name"], t["score"]) for t in expected["tests"]]


@pytest.mark.parametrize("level", ["bubblewrap", "unprivileged-uid"])
def test_forged_results_do_not_stand_and_no_student_process_outlives_grading(env, level):
    _, correct, _ = env.grade(EXAMPLES / ASSIGNMENT / "correct", level)
    run, results, after = env.grade(HOSTILE / "fake_results", level)
    assert results["score"] == correct["score"] and results["score"] != 1000.0, run.tail()
    first, later = after["sums"]
    assert first == later  # the forger's detached process did not write after the grader
    student = _uid(env, "grader-student")
    assert [p for p in after["procs"] if p[1] in (student, "65534")] == []


def test_code_that_looks_for_the_reference_gets_nothing_at_the_uid_level(env):
    run, results, after = env.grade(HOSTILE / "uid_read_reference", "unprivileged-uid")
    assert "Student code ran isolated at level: unprivileged-uid." in results["output"], run.tail()
    assert results["score"] == 0
    assert [p for p in after["procs"] if p[1] == _uid(env, "grader-student")] == []
