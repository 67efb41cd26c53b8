"""The Gradescope autograder: the zip, its setup.sh, its run_autograder end to end, the Dockerfile, budgets.

The end-to-end tests lay out a temporary folder as Gradescope's /autograder
(source = the unpacked zip, submission, results) and run the zip's real
run_autograder in it with AUTOGRADER_ROOT pointing there and GRADER_PYTHON
at this venv's interpreter (setup.sh needs the network; its logic is tested
with stand-ins for apt-get, useradd, python and pip).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import jsonschema
import pytest

from grader.gradescope import budget, layout
from grader.report.gradescope import schema
from grader.rubric.model import CheckSpec, Question, Rubric

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "submissions_example"
PY = sys.executable

pytestmark = pytest.mark.slow


def _grader(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "grader", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("zip") / "hw4_autograder.zip"
    proc = _grader("gradescope", "build", "--assignment", "hw4", "-o", str(out), cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def _unpack(zip_path: Path, root: Path, submission: Path) -> Path:
    """A folder laid out like Gradescope's /autograder: source (the zip, modes kept), submission, results."""
    source = root / "source"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(source)
        for info in zf.infolist():
            (source / info.filename).chmod((info.external_attr >> 16) & 0o777)
    shutil.copytree(submission, root / "submission")
    (root / "results").mkdir()
    return root


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GRADER_ISOLATION", "PYTHONPATH")}
    env.update(AUTOGRADER_ROOT=str(root), GRADER_PYTHON=PY, GRADER_THREADS="1", **extra)
    return env


def _run_autograder(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(root / "source" / "run_autograder"), *args], env=_env(root, **env),
                          cwd=root, capture_output=True, text=True, timeout=900)


def _results(root: Path) -> dict:
    data = json.loads((root / "results" / "results.json").read_text())
    jsonschema.validate(data, schema())
    return data


# --- the zip ------------------------------------------------------------------------------------


def test_zip_holds_setup_and_run_autograder_at_its_root_and_nothing_else_of_the_repo(built):
    zip_path, proc = built
    with zipfile.ZipFile(zip_path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    names = set(infos)
    for script in ("setup.sh", "run_autograder"):
        assert script in names
        assert (infos[script].external_attr >> 16) & 0o111, f"{script} is not executable"
    assert {n for n in names if not n.startswith("grader/")} == {
        "setup.sh", "run_autograder", "rubrics/hw4.yaml", "reference/__init__.py", "reference/hw4.py",
        "requirements/common.txt", "requirements/torch-cpu.txt",
        "rubrics/hw4_tests/test_p6_relu.py"}  # p6.relu's unittest file (grader.checks.unittest_kind)
    assert "grader/gradescope/run.py" in names and "grader/child/main.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any(n.startswith(("tests/", "submissions_example/")) for n in names)
    shipped_pkg = {n for n in names if n.startswith("grader/")}
    on_disk = {f"grader/{p.relative_to(ROOT / 'grader').as_posix()}" for p in (ROOT / "grader").rglob("*")
               if p.is_file() and layout.shipped(p.relative_to(ROOT / "grader"))}
    assert shipped_pkg == on_disk
    assert "setup.sh and run_autograder are at its root" in proc.stdout


def test_build_is_reproducible(built, tmp_path):
    zip_path, _ = built
    again = tmp_path / "again.zip"
    assert _grader("gradescope", "build", "--assignment", "hw4", "-o", str(again)).returncode == 0
    assert again.read_bytes() == zip_path.read_bytes()


def test_build_of_an_unknown_assignment_is_a_usage_error(tmp_path):
    proc = _grader("gradescope", "build", "--assignment", "hw99", "-o", str(tmp_path / "x.zip"))
    assert proc.returncode == 2 and "no rubric" in proc.stderr and "hw4" in proc.stderr
    assert not (tmp_path / "x.zip").exists()


def test_build_warns_when_the_rubric_does_not_fit_the_container(built):
    _, proc = built
    # hw4's sandbox memory limit (4096 MB) exceeds Gradescope's 768 MB container.
    assert re.search(r"warning: hw4: limits\.memory_mb lets student code use 4096 MB.*768 MB", proc.stderr)


def test_every_shipped_requirement_is_an_exact_pin(built):
    zip_path, _ = built
    with zipfile.ZipFile(zip_path) as zf:
        for name in ("requirements/common.txt", "requirements/torch-cpu.txt"):
            for line in zf.read(name).decode().splitlines():
                line = line.split("#")[0].strip()
                if line and not line.startswith("-r"):
                    assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9_.+-]*", line), f"{name}: {line!r} is not pinned"


# --- run_autograder end to end ------------------------------------------------------------------


def test_run_autograder_grades_the_correct_example_with_full_marks(built, tmp_path):
    zip_path, _ = built
    root = _unpack(zip_path, tmp_path / "autograder", EXAMPLES / "hw4" / "correct")
    proc = _run_autograder(root, "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    data = _results(root)
    assert data["score"] == sum(t["max_score"] for t in data["tests"]) > 0
    assert all(t["status"] == "passed" for t in data["tests"])
    assert "Student code ran isolated at level: bubblewrap." in data["output"]
    # The zip's own copy of the grader ran, not the repository's.
    assert f"grader {root / 'source' / 'grader'}" in proc.stdout


def test_run_autograder_gives_the_partial_example_the_score_grader_check_gives(built, tmp_path):
    zip_path, _ = built
    partial = EXAMPLES / "hw4" / "partial"
    root = _unpack(zip_path, tmp_path / "autograder", partial)
    assert _run_autograder(root, "--seed", "1", "--skip-training").returncode == 0
    data = _results(root)
    check = _grader("check", str(partial), "--assignment", "hw4", "--seed", "1", "--skip-training", "-q",
                    "--results", str(tmp_path / "check.json"), env=_env(root))
    assert check.returncode == 0, check.stderr
    expected = json.loads((tmp_path / "check.json").read_text())
    assert 0 < data["score"] == expected["score"] < sum(t["max_score"] for t in data["tests"])
    assert [(t["name"], t["score"]) for t in data["tests"]] == [(t["name"], t["score"]) for t in expected["tests"]]


def test_running_out_of_time_keeps_the_results_so_far(built, tmp_path):
    zip_path, _ = built
    root = _unpack(zip_path, tmp_path / "autograder", EXAMPLES / "hostile" / "infinite_loop")
    started = time.monotonic()
    # p3 loops forever (30 s request limit); the whole run is given 12 s.
    proc = _run_autograder(root, "--seed", "1", "--skip-training", GRADER_TIME_LIMIT_S="12")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    data = _results(root)
    assert elapsed < 40
    tests = {t["name"].split()[0]: t for t in data["tests"]}
    assert tests["p3"]["status"] == "failed"
    # Checks cut off by the alarm say so; checks the engine did not start after the soft deadline say so too.
    not_graded = [t for t in data["tests"] if re.search(r"Not graded: the autograder's time ran out \(12 s in all\)|"
                                                        r"Not run: the grader's overall time budget ran out", t["output"])]
    assert not_graded, data
    for t in data["tests"]:  # every check either finished (and p1, p2 are right) or says it was not graded
        assert t in not_graded or t["name"].startswith("p3") or t["score"] == t["max_score"]
    assert data["score"] == sum(t["score"] for t in data["tests"])


def test_sigterm_writes_the_results_so_far(built, tmp_path):
    zip_path, _ = built
    root = _unpack(zip_path, tmp_path / "autograder", EXAMPLES / "hostile" / "infinite_loop")
    env = _env(root, PYTHONPATH=str(root / "source"))
    proc = subprocess.Popen([PY, "-m", "grader", "gradescope", "run", "--seed", "1", "--skip-training"],
                            cwd=root / "source", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = root / "results" / "results.json"
    deadline = time.monotonic() + 60
    while not results.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "did not finish" in results.read_text()  # written first, before anything can go wrong
    time.sleep(8)  # some checks done, p3 hanging (or the sandbox still starting on a slow machine)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    data = _results(root)
    assert any("the autograder was stopped (SIGTERM)" in t["output"] for t in data["tests"]), data
    assert "Grading stopped early" in data["output"]
    assert data["score"] == sum(t["score"] for t in data["tests"])


def test_setup_sh_pins_installs_the_cpu_torch_creates_the_user_and_locks_the_answers(built, tmp_path):
    zip_path, _ = built
    root = _unpack(zip_path, tmp_path / "autograder", EXAMPLES / "hw4" / "correct")
    stubs, log = tmp_path / "stubs", tmp_path / "calls.log"
    stubs.mkdir()

    def stub(path: Path, body: str) -> None:
        path.write_text("#!/usr/bin/env bash\n" + body)
        path.chmod(0o755)

    logger = f'echo "$(basename "$0") $*" >> {log}\n'
    stub(stubs / "apt-get", logger)
    stub(stubs / "useradd", logger)
    stub(stubs / "id", "exit 1\n")  # no grader-student yet
    venv_tool = logger + 'case "$*" in *"import torch"*) echo stub-torch;; esac\n'
    # The stand-in Python makes a venv whose python and pip only log what they are asked to do.
    stub(stubs / "python-stub", logger + f"""if [ "$1" = -m ] && [ "$2" = venv ]; then
  mkdir -p "$3/bin"
  printf '%s\\n' '#!/usr/bin/env bash' '{venv_tool.strip()}' > "$3/bin/python"
  printf '%s\\n' '#!/usr/bin/env bash' '{logger.strip()}' > "$3/bin/pip"
  chmod 755 "$3/bin/python" "$3/bin/pip"
fi
exit 0
""")
    env = {"PATH": f"{stubs}:{os.environ['PATH']}", "AUTOGRADER_ROOT": str(root), "GRADER_SETUP_PYTHON": "python-stub"}
    proc = subprocess.run(["bash", str(root / "source" / "setup.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    pip = [c for c in calls if c.startswith("pip ")]
    assert pip == ["pip install --disable-pip-version-check --no-input -q --index-url "
                   "https://download.pytorch.org/whl/cpu -r requirements/torch-cpu.txt",
                   "pip install --disable-pip-version-check --no-input -q -r requirements/common.txt"]
    assert any(c.startswith("apt-get install") and "bubblewrap" in c for c in calls)
    useradd = next(c for c in calls if c.startswith("useradd"))
    assert useradd.endswith("grader-student") and "--no-create-home" in useradd and "nologin" in useradd
    assert any("-m grader.gradescope.datasets" in c and str(root / "source" / "data") in c for c in calls)
    # issue 9: the reference-run cache is filled at image build, after the datasets, from the same data folder
    warm = [i for i, c in enumerate(calls) if "-m grader.training.warm --data-dir " + str(root / "source" / "data") in c]
    assert warm and warm[0] > next(i for i, c in enumerate(calls) if "-m grader.gradescope.datasets" in c), calls
    src = root / "source"
    for secret in ("reference", "rubrics", "data"):
        assert stat.S_IMODE((src / secret).stat().st_mode) == 0o700, secret
    for f in (src / "reference").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE((src / "grader" / "child" / "main.py").stat().st_mode) & 0o004  # readable by the student user


# --- the Dockerfile ----------------------------------------------------------------------------


def _dockerfile() -> tuple[str, dict[str, str], list[tuple[str, str]], list[str]]:
    """(FROM image, ARG defaults, COPY (source, dest) pairs with ARGs expanded, RUN commands)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    base, args, copies, runs = "", {}, [], []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        expanded = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest)
        if word == "FROM":
            base = rest
        elif word == "ARG":
            name, _, default = expanded.partition("=")
            args[name] = default
        elif word == "COPY":
            *sources, dest = expanded.split()
            copies += [(s, dest) for s in sources]
        elif word == "RUN":
            runs.append(expanded)
    return base, args, copies, runs


def test_dockerfile_starts_from_gradescopes_ubuntu_22_04_base():
    base, _, _, _ = _dockerfile()
    assert base == "gradescope/autograder-base:ubuntu-22.04"


def test_dockerfile_copies_the_zip_that_build_writes_and_nothing_else():
    _, args, copies, _ = _dockerfile()
    assert copies == [(f"{args['ASSIGNMENT']}_autograder.zip", "/tmp/autograder.zip")]


def test_dockerfile_unpacks_the_zip_as_gradescope_does(built, tmp_path):
    """The Dockerfile's unpacking step, run here with /autograder moved under tmp_path: source/ holds
    exactly the zip's files (p6.relu's unittest file included), and run_autograder is installed executable."""
    zip_path, _ = built
    _, _, _, runs = _dockerfile()
    unpack = next(r for r in runs if "zipfile -e" in r)
    work = tmp_path / "zip"
    work.mkdir()
    shutil.copy(zip_path, work / "autograder.zip")
    command = (unpack.replace("/tmp/autograder.zip", "@ZIP@").replace("/autograder", str(tmp_path / "autograder"))
               .replace("@ZIP@", str(work / "autograder.zip")).replace("python3 ", f"{PY} "))
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    source = tmp_path / "autograder" / "source"
    with zipfile.ZipFile(zip_path) as zf:
        members = {i.filename for i in zf.infolist() if not i.is_dir()}
    assert {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()} == members
    assert "rubrics/hw4_tests/test_p6_relu.py" in members
    installed = tmp_path / "autograder" / "run_autograder"
    assert installed.read_bytes() == (source / "run_autograder").read_bytes() and os.access(installed, os.X_OK)


def test_dockerfile_installs_nothing_itself_but_runs_the_zips_setup_sh():
    """So the image and the zip install the same pinned versions (the zip's pins: test_every_shipped_requirement...)."""
    _, _, _, runs = _dockerfile()
    assert any(r.startswith("bash /autograder/source/setup.sh") for r in runs)
    assert not any(re.search(r"\bpip3? install|-m pip|\bconda\b|apt-get install", r) for r in runs)
    setup = (ROOT / "grader" / "gradescope" / "files" / "setup.sh").read_text()
    assert re.findall(r"-r (requirements/[\w.-]+)", setup) == ["requirements/torch-cpu.txt", "requirements/common.txt"]


# --- budgets ----------------------------------------------------------------------------------------


def _rubric(*checks: CheckSpec, **limits: float) -> Rubric:
    return Rubric(path=ROOT / "rubrics" / "x.yaml", assignment="x", title="x", reference_name="x", code_files=["x.py"],
                  answer_files=[], load_mode="definitions", limits=dict(limits),
                  questions=[Question(id="q", title="q", points=1.0, checks=checks)], total_points=1.0)


def _training(cid: str, seconds: float | None) -> CheckSpec:
    return CheckSpec(id=cid, kind="training", question="q", title=cid, points=1.0, training=True,
                     params={} if seconds is None else {"max_seconds": seconds})


def test_a_rubric_that_fits_gets_no_warning():
    assert budget.assess(_rubric(_training("q.a", 100), memory_mb=400)).warnings == []


def test_training_beyond_the_timeout_is_warned_about():
    # 300 + 250 + 60 (default) + 20 overhead = 630 s > 600 s
    a = budget.assess(_rubric(_training("q.a", 300), _training("q.b", 250), _training("q.c", None), memory_mb=400))
    assert a.estimate_s == 630 and len(a.warnings) == 1
    assert "3 training check(s) may take 610 s" in a.warnings[0] and "600 s available" in a.warnings[0]


def test_a_stated_budget_above_gradescopes_default_or_maximum_is_warned_about():
    assert "raise the timeout" in budget.assess(_rubric(total_time_s=1200, memory_mb=400)).warnings[0]
    assert "40 minutes" in budget.assess(_rubric(total_time_s=3000, memory_mb=400)).warnings[0]
    assert budget.assess(_rubric(total_time_s=1200, memory_mb=400), timeout_s=1200).warnings == []


def test_memory_beyond_the_container_is_warned_about():
    (warning,) = budget.assess(_rubric(memory_mb=2048)).warnings
    assert "2048 MB" in warning and "at most 418" in warning
    assert budget.assess(_rubric(memory_mb=2048), memory_mb=3072).warnings == []


def test_deadlines_leave_room_for_the_longest_check_and_for_writing():
    d = budget.deadlines(_rubric(timeout_s=30), 600)
    assert (d.soft_s, d.hard_s) == (560, 590)
    d = budget.deadlines(_rubric(_training("q.a", 180), timeout_s=30), 600)
    assert d.soft_s == 590 - 210
    d = budget.deadlines(_rubric(timeout_s=30), 12)
    assert d.soft_s == 6 and d.hard_s == pytest.approx(10.8)


# --- leftovers at the unprivileged-uid level ----------------------------------------------------


def test_reaping_kills_every_process_of_the_sandbox_user_and_only_those(monkeypatch):
    from grader.gradescope import run as gs_run

    uid = 54321  # no account uses it: the stand-in for grader-student
    monkeypatch.setattr(gs_run.isolation, "unprivileged_user", lambda: (uid, uid))
    student = subprocess.Popen(["sleep", "60"], user=uid, group=uid, extra_groups=[], start_new_session=True)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        assert gs_run.reap_student_processes("bubblewrap") == 0  # other levels: nothing to do
        assert gs_run.reap_student_processes("unprivileged-uid") == 1
        assert student.wait(timeout=10) == -signal.SIGKILL
        assert bystander.poll() is None
    finally:
        for p in (student, bystander):
            p.kill()
            p.wait()


# --- measured memory (scripts/gradescope_memory.py writes grader/gradescope/measured_memory.json) ----------


def _measured(tmp_path: Path, *resident_mb: int, oom: int = 0) -> Path:
    runs = [{"training": i == 0, "limit_mb": 768, "charged_mb": r + 10, "resident_mb": r, "oom_kills": oom,
             "score": 90.0, "max_score": 90.0} for i, r in enumerate(resident_mb)]
    path = tmp_path / "measured.json"
    path.write_text(json.dumps({"command": "cmd", "measured": "2026-12-01", "limit_mb": 768, "environment": "env",
                                "assignments": {"x": runs}}))
    return path


def test_a_measured_peak_sets_the_recommended_container_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "MEASURED_MEMORY", _measured(tmp_path, 600, 500))
    a = budget.assess(_rubric(memory_mb=400))
    (note,) = a.notes
    assert "600 MB with training (under 768 MB: fits); 500 MB without training" in note
    assert "at least 768 MB" in note  # 690 -> 768
    assert a.warnings == []
    monkeypatch.setattr(budget, "MEASURED_MEMORY", _measured(tmp_path, 900, 500, oom=1))
    a = budget.assess(_rubric(memory_mb=400))
    assert "more than 768 MB with training (killed for memory" in a.notes[0]
    (warning,) = a.warnings
    assert "killed for memory under 768 MB" in warning and "at least 1280 MB" in warning  # 900 * 1.15 -> 1280
    assert budget.assess(_rubric(memory_mb=400), memory_mb=1280).warnings == []


def test_no_measurement_no_note(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "MEASURED_MEMORY", tmp_path / "absent.json")
    assert budget.assess(_rubric(memory_mb=400)).notes == []
