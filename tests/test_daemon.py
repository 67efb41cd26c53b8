"""`grader daemon`: checks sent to a warm daemon get what a direct `grader check` gets, a spare sandbox child
serves one submission only, and only its own user may use it (grader/daemon.py)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from grader import daemon
from tests.conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.slow

CORRECT = EXAMPLES / "hw4" / "correct"

# A submission that tries to leave something for whoever is graded after it: files in its folder, in /tmp and
# in its home, and a process that keeps writing them after its child has ended.
LEAVER = '''
def rgb_to_gray_weight():
    import os, time
    for folder in (".", "/tmp", os.path.expanduser("~"), "/submission/.."):
        try:
            open(os.path.join(folder, "left-by-the-last-check"), "w").write("x")
        except OSError:
            pass
    try:
        pid = os.fork()
    except OSError:
        pid = -1
    if pid == 0:
        for _ in range(300):
            try:
                open("/tmp/left-by-the-last-check", "w").write("x")
            except OSError:
                pass
            time.sleep(0.1)
        os._exit(0)
    return torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
'''
# ... and one that gives a wrong answer if it finds any of it.
FINDER = '''
def rgb_to_gray_weight():
    import glob, os
    seen = [p for folder in (".", "/tmp", os.path.expanduser("~"), "/submission/..", "/")
            for p in glob.glob(os.path.join(folder, "left-by-the-last-check"))]
    if seen:
        return torch.zeros(1, 3, 1, 1)
    return torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
'''

# A correct submission that takes its time: its check is still running when its caller is killed.
SLOW = '''
def rgb_to_gray_weight():
    import time
    time.sleep(25)
    return torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
'''


def _submission(tmp: Path, name: str, function: str) -> Path:
    folder = tmp / name
    shutil.copytree(CORRECT, folder)
    code = (folder / "hw4.py").read_text()
    start = code.index("def rgb_to_gray_weight():")
    end = code.index("\ndef ", start + 1)
    (folder / "hw4.py").write_text(code[:start] + function.strip() + "\n\n" + code[end:])
    return folder


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GRADER_NO_DAEMON"}
    env.update(GRADER_DAEMON_DIR=str(home), **extra)
    return env


def _grader(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _check(env: dict[str, str], folder: Path, out: Path, *extra: str) -> dict:
    # A --data-dir relative to the caller's folder: a spare, made in the daemon's, must still fit.
    data = out.parent / "data"
    data.mkdir(exist_ok=True)
    proc = _grader(env, "check", str(folder), "--assignment", "hw4", "--skip-training", "--json", str(out),
                   "--data-dir", os.path.relpath(data, ROOT), *extra)
    assert proc.returncode == 0, proc.stderr
    return {"record": json.loads(out.read_text()), "stderr": proc.stderr}


def _status(env: dict[str, str]) -> dict:
    home = Path(env["GRADER_DAEMON_DIR"])
    old = os.environ.get("GRADER_DAEMON_DIR")
    os.environ["GRADER_DAEMON_DIR"] = str(home)
    try:
        return daemon.request("status") or {}
    finally:
        if old is None:
            del os.environ["GRADER_DAEMON_DIR"]
        else:
            os.environ["GRADER_DAEMON_DIR"] = old


def _verdicts(record: dict) -> list[tuple]:
    return [(r["check_id"], r["score"], r["status"], r["feedback"]) for r in record["results"]]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A daemon in a folder of its own, and the checks this module sends it, in order."""
    tmp = tmp_path_factory.mktemp("daemon")
    # Its own folder, mode 0700, where another uid could reach it once opened (pytest's folders are 0700 above).
    home = Path(tempfile.mkdtemp(prefix="grader-daemon-test-"))
    # Its spares' and its checks' temporary folders in one of their own, to find what they leave behind.
    scratch = tmp / "scratch"
    scratch.mkdir()
    env = _env(home, TMPDIR=str(scratch))
    proc = subprocess.Popen([sys.executable, "-m", "grader", "daemon", "start", "--foreground", "--idle-minutes", "5"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while not _status(env) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.3)
        runs = {
            "leaver": _check(env, _submission(tmp, "leaver", LEAVER), tmp / "leaver.json"),
            "finder": _check(env, _submission(tmp, "finder", FINDER), tmp / "finder.json"),
            "daemon": _check(env, CORRECT, tmp / "daemon.json", "--seed", "7"),
            # The same check in this process: the daemon was started without this variable, read at import.
            # (Not "1" whatever this process has: dask's nanny sets OMP_NUM_THREADS=1 here once a test used it.)
            "direct": _check(_env(home, OMP_NUM_THREADS=str(int(os.environ.get("OMP_NUM_THREADS") or 0) + 1)),
                             CORRECT, tmp / "direct.json", "--seed", "7"),
        }
        yield {"env": env, "home": home, "proc": proc, "runs": runs, "status": _status(env), "tmp": tmp,
               "scratch": scratch}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def test_checks_through_the_daemon_grade_as_a_direct_check(served):
    runs, status = served["runs"], served["status"]
    assert status["served"] == 3  # the direct check was not sent: its environment differs
    assert status["spares_taken"] == status["spares_used"] == 2  # the 2nd and 3rd checks each used a child waiting
    assert "not using the grader daemon" in runs["direct"]["stderr"] and "OMP_NUM_THREADS" in runs["direct"]["stderr"]
    assert _verdicts(runs["daemon"]["record"]) == _verdicts(runs["direct"]["record"])
    assert sum(r["score"] for r in runs["daemon"]["record"]["results"]) == 90


def test_a_spare_child_sees_nothing_of_the_check_before(served):
    runs = served["runs"]
    assert sum(r["score"] for r in runs["leaver"]["record"]["results"]) == 90
    # The finder ran in the spare child made while the leaver was graded, right after it.
    finder = {r["check_id"]: r for r in runs["finder"]["record"]["results"]}
    assert finder["p3"]["score"] == finder["p3"]["max_score"], finder["p3"]["feedback"]
    assert sum(r["score"] for r in finder.values()) == 90


def test_ctrl_c_ends_the_check_in_the_daemon(served):
    env = served["env"]
    proc = subprocess.Popen([sys.executable, "-m", "grader", "check", str(CORRECT), "--assignment", "hw4",
                             "--skip-training", "-q"], cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while _status(env).get("running", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    deadline = time.monotonic() + 30
    while _status(env)["running"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _status(env)["running"] == 0


def test_another_user_is_refused(served):
    """Even past the folder's mode and the socket's: the daemon asks the kernel who connected."""
    path = daemon.socket_path(served["home"])
    os.chmod(served["home"], 0o711)
    os.chmod(path, 0o666)
    try:
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                os.setgid(65534)
                os.setuid(65534)
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(20)
                    sock.connect(str(path))
                    try:
                        daemon.send(sock, {"op": "status"})
                        daemon.receive(sock)
                        code = 1  # answered
                    except (daemon.Closed, BrokenPipeError, ConnectionResetError):  # hung up on, unheard
                        code = 0
            except BaseException as exc:
                print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            finally:
                os._exit(code)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    finally:
        os.chmod(served["home"], 0o700)
        os.chmod(path, 0o600)
    assert _status(served["env"])["pid"] == served["proc"].pid  # still serving


def test_a_folder_others_may_enter_is_refused(tmp_path, monkeypatch):
    home = tmp_path / "open"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    monkeypatch.setenv("GRADER_DAEMON_DIR", str(home))
    with pytest.raises(daemon.UsageError, match="0700"):
        daemon.private_home(create=False)


def test_a_check_whose_caller_is_killed_ends(served):
    """A caller killed (a `timeout`, a closed terminal) takes its check with it, as a direct one does: the worker
    must not grade on and write its results file later, over what a check run after it wrote."""
    env, tmp = served["env"], served["tmp"]
    results = tmp / "killed" / "results.json"
    # Run on one CPU (`taskset -c 0`): the worker that checks for it runs on the caller's CPUs too, which decide
    # the check's thread count, as they would in a direct check.
    proc = subprocess.Popen([sys.executable, "-m", "grader", "check", str(_submission(tmp, "slow", SLOW)),
                             "--assignment", "hw4", "--skip-training", "-q", "--results", str(results)],
                            cwd=ROOT, env=env, preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    deadline = time.monotonic() + 60
    while not results.exists() and time.monotonic() < deadline:  # the worker's "did not finish" file
        time.sleep(0.1)
    assert results.exists() and _status(env)["running"] == 1
    if len(os.sched_getaffinity(0)) > 1:
        workers = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and _parent(int(e.name)) == served["proc"].pid]
        assert str(min(os.sched_getaffinity(0))) in [_cpus(pid) for pid in workers]
    unfinished = results.read_text()
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 15  # the slow function alone takes 25 s
    while _status(env)["running"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _status(env)["running"] == 0
    assert results.read_text() == unfinished


def test_stop(served):
    env = served["env"]
    proc = _grader(env, "daemon", "stop")
    assert proc.returncode == 0 and "stops" in proc.stdout
    served["proc"].wait(timeout=30)
    assert not daemon.socket_path(served["home"]).exists()
    assert _grader(env, "daemon", "status").returncode == 1
    # Its spare worker and that worker's sandbox child leave with it.
    deadline = time.monotonic() + 30
    while _processes_of(served["home"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_of(served["home"]) == []
    # Nor any sandbox folder: a spare handed to a check that was interrupted at once (Ctrl-C, its caller
    # killed, above) left its folder and cgroup behind.
    assert sorted(p.name for p in served["scratch"].glob("grader-sandbox-*")) == []


@pytest.fixture
def short_tmp():
    """A folder of its own under /tmp: pytest's folders under xdist are too long for a socket's path."""
    folder = Path(tempfile.mkdtemp(prefix="grader-daemon-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _refused(home: Path, why: str, monkeypatch, capsys) -> None:
    """`home` as the daemon folder: `grader daemon start` refuses it saying `why`, and a check runs here
    (`delegate` gives None) with the reason on stderr, instead of failing."""
    monkeypatch.setenv("GRADER_DAEMON_DIR", str(home))
    monkeypatch.delenv("GRADER_NO_DAEMON", raising=False)
    assert daemon.delegate(["check", str(CORRECT), "--assignment", "hw4"]) is None
    err = capsys.readouterr().err
    assert "not using a grader daemon" in err and why in err
    with pytest.raises(daemon.UsageError, match=why):
        daemon.start(idle_minutes=1)


def test_a_daemon_folder_that_is_not_private_does_not_stop_a_check(tmp_path, monkeypatch, capsys):
    """Another user (or a student uid, where the sandbox shares /tmp) may make /tmp/grader-daemon-UID first:
    `grader check` then runs here with a note, instead of failing; only `grader daemon start` refuses it."""
    home = tmp_path / "squatted"
    home.mkdir()
    os.chmod(home, 0o777)
    _refused(home, "0700", monkeypatch, capsys)


def test_a_daemon_folder_the_sandbox_can_see_is_refused(short_tmp, monkeypatch, capsys):
    """GRADER_DAEMON_DIR inside a folder bound into the bubblewrap child (the Python's, here a stand-in): the
    child could connect to the socket, as the user the daemon serves."""
    from grader.sandbox import isolation

    home = short_tmp / "venv" / "run"
    home.mkdir(parents=True, mode=0o700)
    monkeypatch.setattr(isolation, "python_dirs", lambda: [short_tmp / "venv"])
    _refused(home, "bubblewrap sandbox", monkeypatch, capsys)


def test_a_daemon_that_does_not_answer_does_not_hang_a_check(short_tmp, monkeypatch, capsys):
    """A daemon stopped (Ctrl-Z on `grader daemon start --foreground`, SIGSTOP) or hung: its socket still takes
    connections into its backlog, and a check must not wait for it forever."""
    home = short_tmp
    monkeypatch.setenv("GRADER_DAEMON_DIR", str(home))
    monkeypatch.delenv("GRADER_NO_DAEMON", raising=False)
    monkeypatch.setattr(daemon, "ANSWER_TIMEOUT_S", 0.5)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as frozen:
        frozen.bind(str(daemon.socket_path(home)))
        frozen.listen(4)  # and never accepts
        started = time.monotonic()
        assert daemon.delegate(["check", str(CORRECT), "--assignment", "hw4"]) is None
        assert time.monotonic() - started < 10
    assert "did not answer" in capsys.readouterr().err


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _cpus(pid: int) -> str:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "gone"
    return next(line.split()[1] for line in status.splitlines() if line.startswith("Cpus_allowed_list:"))


def _processes_of(home: Path) -> list[int]:
    """Processes started with this daemon folder in their environment (the daemon, its workers, their children)."""
    mark = f"GRADER_DAEMON_DIR={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if mark in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_a_daemon_folder_too_long_for_a_socket_is_refused(short_tmp, monkeypatch, capsys):
    """A socket's path has at most 107 bytes: a longer folder is said so, and a check runs here."""
    deep = short_tmp / ("x" * 100)
    deep.mkdir(mode=0o700)
    _refused(deep, "too long", monkeypatch, capsys)

