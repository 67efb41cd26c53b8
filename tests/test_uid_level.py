"""The unprivileged-uid isolation level (Gradescope containers where bubblewrap cannot start) holds.

Two attacks were real at this level: a submission graded in a batch beside
another read the reference once the first sandbox to close had unlocked it,
and a setsid() daemon outlived its grading (its child never joined its
cgroup) and killed the next students' children. Here both are graded at this
level, through the real command line and engine: `uid_read_reference` in a
`grader grade -j 2` pool beside a correct submission, `uid_daemon` followed
by a correct submission.

This level cannot start with the grader's own Python on these machines: it
lives under /root (mode 700), which the student uid cannot enter (see
`isolation.uid_level_problem`). The `student_python` fixture makes it
startable as an operator would (GRADER_CHILD_PYTHON): a venv outside /root,
made with a system Python of the same minor version, holding hard-linked
copies of the grader's package directories (no copy of the data, same files).
Student code runs as uids from GRADER_STUDENT_UIDS, a range no one else uses
here, so that reaping all of their processes is safe.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader.sandbox import cgroups, isolation
from grader.sandbox.client import Limits, Sandbox
from hostile_helpers import CORRECT, HOSTILE, processes_named

REPO = Path(__file__).resolve().parent.parent
RUBRIC = REPO / "rubrics" / "hw4.yaml"
REFERENCE = REPO / "reference" / "hw4.py"
STUDENT_UIDS = (64_171, 64_172)  # two: a pool of two graders runs two sandboxes at once
STASH = Path("/tmp/grader_hostile_uid_stash")

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="the unprivileged-uid level needs root"),
              pytest.mark.serial]  # run alone, after the parallel part (pyproject.toml)


def _site_dirs() -> list[Path]:
    return sorted({Path(p).resolve() for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()})


def _running(comm: str) -> list[int]:
    """Live processes named `comm`; a zombie waiting for init to collect it runs nothing, it is left out."""
    live = []
    for pid in processes_named(comm):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            live.append(pid)
    return live


def _run_as(uid: int, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, user=uid, group=uid, extra_groups=[], capture_output=True, text=True, cwd="/",
                          env={"PATH": "/usr/bin:/bin"}, timeout=60)


def _readable_python() -> Path | None:
    """A venv the student uids can run, with the grader's packages; built once per package set."""
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        return None
    sites = _site_dirs()
    key = hashlib.sha256("\n".join([str(system), *map(str, sites)]).encode()).hexdigest()[:12]
    venv = Path(f"/opt/grader-test-venv-{key}")
    python = venv / "bin" / "python"
    if not python.exists():
        building = Path(f"{venv}.building-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        subprocess.run([str(system), "-m", "venv", "--without-pip", str(building)], check=True, capture_output=True)
        target = building / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        for i, site in enumerate(sites):
            # Hard links: the same files, in directories the student uid can enter.
            copy = building / f"site-{i}"
            if subprocess.run(["cp", "-a", "--link", str(site), str(copy)], capture_output=True).returncode != 0:
                shutil.rmtree(building, ignore_errors=True)
                return None
            (target / f"grader-test-site-{i}.pth").write_text(str(venv / f"site-{i}") + "\n")
        os.chmod(building, 0o755)
        try:
            building.rename(venv)
        except OSError:  # built meanwhile by another run
            shutil.rmtree(building, ignore_errors=True)
    return python


@pytest.fixture(scope="module")
def student_python() -> str:
    """The environment variables that make the uid level start here (skips where it cannot be made to)."""
    for uid in STUDENT_UIDS:
        if isolation._live_pids_of(uid):
            pytest.skip(f"uid {uid} is in use on this machine")
    saved = {k: os.environ.get(k) for k in ("GRADER_STUDENT_UIDS", "GRADER_CHILD_PYTHON")}
    os.environ["GRADER_STUDENT_UIDS"] = f"{STUDENT_UIDS[0]}-{STUDENT_UIDS[-1]}"
    try:
        if isolation.uid_level_problem() is not None:
            python = _readable_python()
            if python is None:
                pytest.skip("no Python the student uid can read can be made here")
            os.environ["GRADER_CHILD_PYTHON"] = str(python)
        problem = isolation.uid_level_problem()
        if problem:
            pytest.skip(f"the unprivileged-uid level cannot start here: {problem}")
        yield os.environ.get("GRADER_CHILD_PYTHON") or sys.executable
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_a_uid_level_that_cannot_start_fails_closed_and_says_why(monkeypatch, tmp_path):
    closed = tmp_path / "closed"  # mode 700 under a 700 directory, as /root is
    closed.mkdir(mode=0o700)
    os.chmod(tmp_path, 0o700)
    python = closed / "python"
    python.symlink_to(sys.executable)
    monkeypatch.setenv("GRADER_STUDENT_UIDS", str(STUDENT_UIDS[0]))
    monkeypatch.setenv("GRADER_CHILD_PYTHON", str(python))
    monkeypatch.delenv("GRADER_ISOLATION", raising=False)
    if not isolation.bwrap_works():
        # Root without bubblewrap: this level, never a child running as root that could read the reference.
        assert isolation.choose_level() == "unprivileged-uid"
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "hw4.py").write_text("def f():\n    return 1\n")
    with Sandbox(submission_dir=folder, code_file=folder / "hw4.py", answers_file=None,
                 protected=[REPO / "reference"], isolation_level="unprivileged-uid") as box:
        report = box.start()
    assert not report.ok
    assert re.search(r"The sandbox could not start: .*Permission denied.* \(the unprivileged-uid level cannot run "
                     r"here: .*cannot be started as uid 64171 .*GRADER_CHILD_PYTHON", report.errors[0]), report.errors


def test_dedicated_uids_are_only_the_configured_ones_or_grader_student(monkeypatch):
    monkeypatch.setenv("GRADER_STUDENT_UIDS", "64171-64173,64180")
    users = isolation.student_users()
    assert [u.uid for u in users] == [64171, 64172, 64173, 64180] and all(u.dedicated for u in users)
    monkeypatch.delenv("GRADER_STUDENT_UIDS")
    users = isolation.student_users()
    if users:
        assert users[0].dedicated == (users[0].name == "grader-student")
        if users[0].name == "nobody":
            assert isolation.reap_user(users[0]) == 0  # never kills what system daemons run as nobody
    with pytest.raises(ValueError, match="bad range"):
        monkeypatch.setenv("GRADER_STUDENT_UIDS", "0-5")
        isolation.student_users()
    with pytest.raises(ValueError, match="is the account 'nobody'"):
        monkeypatch.setenv("GRADER_STUDENT_UIDS", "65534")  # someone's uid: its processes must not be killed
        isolation.student_users()


# --- protected paths: locked once, counted across sandboxes and processes ---------------------------

HOLD = """
import sys, time
from pathlib import Path
from grader.sandbox import isolation
users = [isolation.StudentUser(64171, 64171, "t", True)]
keys = isolation.lock_protected([Path(sys.argv[1])], users)
print("locked", flush=True)
if sys.stdin.readline().strip() == "release":
    isolation.unlock_protected(keys)
    print("released", flush=True)
"""


def _holder(path: Path, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env, cwd=REPO)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_protected_paths_stay_locked_until_the_last_holder_on_the_machine_lets_go(tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("GRADER_STATE_DIR", str(state))
    env = {**os.environ, "GRADER_STATE_DIR": str(state)}
    secret = tmp_path / "reference"
    secret.mkdir()
    os.chmod(secret, 0o755)

    a, b = _holder(secret, env), _holder(secret, env)
    assert _mode(secret) == 0o750
    a.communicate("release\n", timeout=30)  # the first grader to finish does not unlock its neighbour's paths
    assert _mode(secret) == 0o750
    b.kill()  # a grader killed while holding the lock leaves the paths locked: the safe side
    b.wait()
    assert _mode(secret) == 0o750

    # In one process: sandboxes count, only the last one's close unlocks (and prunes the dead holder).
    users = [isolation.StudentUser(64171, 64171, "t", True)]
    first = isolation.lock_protected([secret], users)
    second = isolation.lock_protected([secret], users)
    isolation.unlock_protected(first)
    assert _mode(secret) == 0o750
    isolation.unlock_protected(second)
    assert _mode(secret) == 0o755
    assert json.loads((state / "protected.json").read_text()) == {"paths": {}}


def test_a_mode_changed_by_someone_else_while_locked_is_left_as_they_set_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_STATE_DIR", str(tmp_path / "state"))
    secret = tmp_path / "labels.idx"
    secret.write_bytes(b"\0" * 8)
    os.chmod(secret, 0o644)
    keys = isolation.lock_protected([secret], [isolation.StudentUser(64171, 64171, "t", True)])
    assert _mode(secret) == 0o640
    os.chmod(secret, 0o600)  # the instructor tightened it meanwhile
    isolation.unlock_protected(keys)
    assert _mode(secret) == 0o600


# --- one sandbox: the cgroup joined before student code, every process of the uid reaped ------------

SANDBOX_CODE = '''
import os, subprocess, time

def where(at_load=open("/proc/self/cgroup").read()):
    """The cgroups this process was in while the submission was loading."""
    return at_load

def read_reference():
    return open(%r).read()[:40]

def leave_a_daemon():
    # double fork + setsid: out of the child's process group, reparented away from it
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open("/proc/self/comm", "w") as f:
                f.write("uid-test-dmn")
            time.sleep(300)
        os._exit(0)
    time.sleep(0.5)
    return 1

def hang():
    while True:
        pass
''' % str(REFERENCE)


def _sandbox(tmp_path: Path) -> Sandbox:
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "hw4.py").write_text(SANDBOX_CODE)
    return Sandbox(submission_dir=folder, code_file=folder / "hw4.py", answers_file=None,
                   limits=Limits(timeout_s=20, startup_timeout_s=120), protected=[REPO / "reference", REPO / "rubrics"],
                   isolation_level="unprivileged-uid")


def _call(box: Sandbox, target: str, timeout: float | None = None):
    return box.request({"op": "call", "target": target, "args": []}, timeout=timeout)


@pytest.mark.slow
def test_the_child_is_in_its_cgroup_before_student_code_runs(student_python, tmp_path):
    if cgroups.create(max_processes=4, memory_mb=None) is None:
        pytest.skip("no cgroup can be made here")
    assert _run_as(STUDENT_UIDS[0], ["cat", str(REFERENCE)]).returncode == 0  # readable unless locked
    with _sandbox(tmp_path) as box:
        assert box.start().ok, box.load_report
        assert box.level == "unprivileged-uid" and box.proc is not None and not box.notes
        at_load = _call(box, "where").value["value"]
        for d in box._cgroup.dirs:
            # /proc/self/cgroup, read by the submission's own code at load, names this sandbox's group
            assert f"{cgroups._placement(d)[1]}\n" in at_load, at_load
        assert box._slot.user.uid in STUDENT_UIDS
        reply = _call(box, "read_reference")
        assert not reply.ok and "Permission denied" in reply.message
    assert _run_as(STUDENT_UIDS[0], ["cat", str(REFERENCE)]).returncode == 0  # unlocked once no sandbox needs it


@pytest.mark.slow
def test_daemons_are_reaped_by_uid_without_a_cgroup_and_a_failed_join_is_reported(student_python, tmp_path,
                                                                                    monkeypatch):
    # Where no cgroup can be made (most containers) or the join fails, only the uid catches a setsid() daemon.
    monkeypatch.setattr(cgroups.Cgroup, "add", lambda self, pid: False)
    with _sandbox(tmp_path) as box:
        assert box.start().ok, box.load_report
        assert box._cgroup is None
        if cgroups.create(max_processes=4, memory_mb=None) is not None:
            assert any("could not place the process running the submission in its control group" in n
                       for n in box.notes), box.notes
        uid = box._slot.user.uid
        assert _call(box, "leave_a_daemon").ok
        daemons = _running("uid-test-dmn")
        assert daemons and set(daemons) <= set(isolation._live_pids_of(uid))  # the attack is real
        # The child is replaced (a timeout): the old child's daemon does not live on beside the new one.
        assert _call(box, "hang", timeout=2).kind == "timeout"
        assert _running("uid-test-dmn") == []
        assert _call(box, "leave_a_daemon").ok and _running("uid-test-dmn")
    assert _running("uid-test-dmn") == [] and isolation._live_pids_of(uid) == []


# --- the two attacks, graded as a course would ---------------------------------------------------------

def _full_marks(results: dict) -> float:
    return sum(t["max_score"] for t in results["tests"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_submission_in_a_pool_never_reads_the_reference_its_neighbour_unlocked(student_python, tmp_path):
    assert _run_as(STUDENT_UIDS[0], ["cat", str(REFERENCE)]).returncode == 0  # readable to the uid unless locked
    mode_before = _mode(REFERENCE.parent)
    batch = tmp_path / "batch"
    shutil.copytree(CORRECT, batch / "a_correct")
    shutil.copytree(HOSTILE / "uid_read_reference", batch / "b_uid_read_reference")
    out = tmp_path / "grades"
    env = {**os.environ, "GRADER_THREADS": "1"}
    env.pop("GRADER_ISOLATION", None)
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", str(batch), "--assignment", "hw4", "--rubric",
                           str(RUBRIC), "--out", str(out), "-j", "2", "--skip-training", "--seed", "7",
                           "--isolation", "unprivileged-uid"], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    correct = json.loads((out / "a_correct" / "results.json").read_text())
    hostile = json.loads((out / "b_uid_read_reference" / "results.json").read_text())
    for results in (correct, hostile):
        assert "Student code ran isolated at level: unprivileged-uid." in results["output"]
    assert correct["score"] == _full_marks(correct) > 0, correct
    assert hostile["score"] == 0, [(t["name"], t["score"]) for t in hostile["tests"]]
    assert all(t["status"] == "failed" for t in hostile["tests"] if t["max_score"] > 0)
    assert "answering from" not in json.dumps(hostile)
    assert _mode(REFERENCE.parent) == mode_before  # unlocked again once the pool is done


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_daemon_does_not_outlive_its_grading_nor_touch_the_next_submission(student_python, tmp_path):
    if os.environ.get("GRADER_UID_DAEMON_TEST_INNER") != "1":
        # Run in a pytest process of its own: inside the whole suite the daemon was twice never started
        # (its log never appeared), while alone and with this file it always is; the attack must run for
        # this test to prove anything, so it gets a grader process with no earlier tests' state.
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               f"{__file__}::test_a_daemon_does_not_outlive_its_grading_nor_touch_the_next_submission"],
                              env={**os.environ, "GRADER_UID_DAEMON_TEST_INNER": "1"}, capture_output=True, text=True,
                              timeout=850, cwd=Path(__file__).resolve().parent.parent)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        return
    from grader.engine import grade_submission
    from grader.report import gradescope
    from grader.rubric.load import load_rubric

    rubric = load_rubric(RUBRIC)
    shutil.rmtree(STASH, ignore_errors=True)
    runs = {}
    for name, source in (("uid_daemon", HOSTILE / "uid_daemon"), ("next", CORRECT)):
        folder = tmp_path / name
        shutil.copytree(source, folder)
        run = grade_submission(folder, rubric, seed=7, isolation="unprivileged-uid", skip_training=True,
                               protect=[tmp_path / f"results-{name}"])
        results = tmp_path / f"results-{name}" / "results.json"
        gradescope.write_results(run, results)
        runs[name] = json.loads(results.read_text())
        if name == "uid_daemon":
            # It did detach (its log says so), and nothing of it runs once its grading is over.
            log_file = STASH / "log.txt"
            for _ in range(50):  # its first line is written right after the double fork; allow a slow start
                if log_file.exists():
                    break
                time.sleep(0.1)
            assert log_file.exists(), ("the daemon never started, so this test proves nothing; load messages: "
                                       f"{run.load_messages}; results: {[(r.check_id, r.score) for r in run.results]}")
            assert "waiting for" in log_file.read_text()
            time.sleep(1.0)
            assert _running("hostile-uid-dmn") == []
            assert all(isolation._live_pids_of(uid) == [] for uid in STUDENT_UIDS)
    for name, results in runs.items():
        assert results["score"] == _full_marks(results) > 0, (name, results)
    log = (STASH / "log.txt").read_text()
    assert "killed" not in log and "copied" not in log, log
    assert sorted(p.name for p in STASH.iterdir()) == ["log.txt"]
    assert _running("hostile-uid-dmn") == []
    shutil.rmtree(STASH, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_reference_reader_is_a_real_attack_it_scores_where_the_reference_is_readable(student_python, tmp_path,
                                                                                          monkeypatch):
    """Control: with the lock switched off, the same submission takes every point it has no solution for."""
    from grader.engine import grade_submission
    from grader.rubric.load import load_rubric

    monkeypatch.setattr(isolation, "lock_protected", lambda paths, users: [])
    monkeypatch.setattr(isolation, "unlock_protected", lambda keys: None)
    folder = tmp_path / "uid_read_reference"
    shutil.copytree(HOSTILE / "uid_read_reference", folder)
    run = grade_submission(folder, load_rubric(RUBRIC), seed=7, isolation="unprivileged-uid", skip_training=True)
    scored = [r for r in run.results if r.max_score > 0 and not r.skipped]
    assert scored and all(r.score == r.max_score for r in scored), [(r.check_id, r.score, r.feedback) for r in scored]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_daemon_is_a_real_attack_without_cgroup_and_reaping_it_costs_the_next_student(student_python, tmp_path,
                                                                                          monkeypatch):
    """Control: the old state of this level (no cgroup joined, no uid reaped) lets the daemon zero the next grading."""
    from grader.engine import grade_submission
    from grader.rubric.load import load_rubric

    rubric = load_rubric(RUBRIC)
    monkeypatch.setattr(cgroups, "create", lambda **kw: None)
    monkeypatch.setattr(isolation, "reap_user", lambda user: 0)
    monkeypatch.setenv("GRADER_STUDENT_UIDS", str(STUDENT_UIDS[0]))  # one uid, as `nobody` was
    shutil.rmtree(STASH, ignore_errors=True)
    try:
        runs = {}
        for name, source in (("uid_daemon", HOSTILE / "uid_daemon"), ("next", CORRECT)):
            folder = tmp_path / name
            shutil.copytree(source, folder)
            runs[name] = grade_submission(folder, rubric, seed=7, isolation="unprivileged-uid", skip_training=True)
            if name == "uid_daemon":
                assert _running("hostile-uid-dmn")  # it outlived its grading
        scored = [r for r in runs["next"].results if r.max_score > 0 and not r.skipped]
        assert sum(r.score for r in scored) < sum(r.max_score for r in scored)
        assert "killed" in (STASH / "log.txt").read_text()
    finally:
        monkeypatch.undo()
        isolation.reap_user(isolation.StudentUser(STUDENT_UIDS[0], STUDENT_UIDS[0], "test", True))
        shutil.rmtree(STASH, ignore_errors=True)
    assert _running("hostile-uid-dmn") == []


def test_a_uid_is_held_by_one_sandbox_at_a_time_across_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_STATE_DIR", str(tmp_path / "state"))
    users = [isolation.StudentUser(uid, uid, "t", True) for uid in STUDENT_UIDS]
    first = isolation.UidSlot.acquire(users)
    second = isolation.UidSlot.acquire(users)
    assert {first.user.uid, second.user.uid} == set(STUDENT_UIDS)
    with pytest.raises(RuntimeError, match="held by another open sandbox of this thread"):
        isolation.UidSlot.acquire(users)  # would wait for itself forever
    # Another process waits until a uid is free, and gets the one released.
    script = ("import os; from grader.sandbox import isolation as i; "
              f"s = i.UidSlot.acquire([i.StudentUser(u, u, 't', True) for u in {list(STUDENT_UIDS)}]); "
              "print(s.user.uid, s.waited_s)")
    other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO,
                             env={**os.environ, "GRADER_STATE_DIR": str(tmp_path / "state")})
    time.sleep(1.0)
    assert other.poll() is None  # both uids are taken: it waits
    second.release()
    uid, waited = other.communicate(timeout=30)[0].split()
    assert int(uid) == second.user.uid and float(waited) > 0.1  # it polled until the release
    first.release()


def test_what_a_killed_grader_left_in_its_cgroup_is_killed_by_the_next_one():
    """A grader killed outright never closes its sandbox; its group, and what runs in it, must not outlive it."""
    if cgroups.create(max_processes=4, memory_mb=None) is None:
        pytest.skip("no cgroup can be made here")
    script = ("import subprocess, sys; from grader.sandbox import cgroups; "
              "g = cgroups.create(max_processes=8, memory_mb=None); "
              "p = subprocess.Popen(['sleep', '300'], start_new_session=True); g.add(p.pid); "
              "print(p.pid, g.dirs[0], flush=True); sys.stdin.readline()")
    grader = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=REPO)
    pid, group = grader.stdout.readline().split()
    grader.kill()  # SIGKILL: no cleanup ran
    grader.wait()
    assert Path(f"/proc/{pid}").exists() and Path(group).is_dir()
    cgroups.create(max_processes=4, memory_mb=None).remove()  # the next grader's first cgroup
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(f"/proc/{pid}").exists() else "gone"
    assert state in ("gone", "Z") and not Path(group).exists()
