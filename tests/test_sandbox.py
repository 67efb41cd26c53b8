"""The sandbox survives what student code does, and says what happened."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, make_submission
from grader.sandbox.client import Limits, Sandbox
from grader.sandbox.isolation import bwrap_works, choose_level

pytestmark = pytest.mark.serial  # see pyproject.toml: run alone, after the parallel part

CODE = '''
import os, sys, time, subprocess
import torch

def double(x):
    return x * 2

def hang():
    while True:
        pass

def die():
    os._exit(7)

def leave_a_process():
    p = subprocess.Popen(["sleep", "300"], start_new_session=True)
    return p.pid

def flood():
    for _ in range(200000):
        print("x" * 100)
    return 1

def read_reference():
    return open(REFERENCE).read()

def weird():
    return object()

def crash():
    import ctypes
    ctypes.string_at(0)

REFERENCE = "%s"
''' % (ROOT / "reference" / "hw4.py")


@pytest.fixture
def sandbox(tmp_path):
    folder = make_submission(tmp_path, {"hw4.py": CODE})
    box = Sandbox(submission_dir=folder, code_file=folder / "hw4.py", answers_file=None,
                  limits=Limits(timeout_s=5, max_file_mb=4), protected=[ROOT / "reference", ROOT / "rubrics"])
    report = box.start()
    assert report.ok, report.errors
    yield box
    box.close()


def call(box, target, *args, timeout=None):
    return box.request({"op": "call", "target": target, "args": list(args)}, timeout=timeout)


def test_values_come_back_as_plain_data(sandbox):
    reply = call(sandbox, "double", np.arange(3, dtype=np.float32))
    assert reply.ok and isinstance(reply.value["value"], np.ndarray)
    np.testing.assert_array_equal(reply.value["value"], [0, 2, 4])


def test_an_infinite_loop_times_out_and_the_next_request_gets_a_fresh_child(sandbox):
    started = time.monotonic()
    reply = call(sandbox, "hang", timeout=1.5)
    assert not reply.ok and reply.kind == "timeout" and "1.5 s time limit" in reply.message
    assert time.monotonic() - started < 10
    assert call(sandbox, "double", np.ones(2, dtype=np.float32)).ok
    assert sandbox.restarts == 1


def test_os_exit_is_survived_and_explained(sandbox):
    reply = call(sandbox, "die")
    assert not reply.ok and reply.kind == "died" and "exited with code 7" in reply.message
    assert call(sandbox, "double", np.ones(1, dtype=np.float32)).ok


def test_a_segfault_is_survived_and_explained(sandbox):
    reply = call(sandbox, "crash")
    assert not reply.ok and reply.kind == "died" and "segmentation fault" in reply.message


def test_unsendable_values_are_refused_by_type(sandbox):
    reply = call(sandbox, "weird")
    assert not reply.ok and reply.kind == "not_plain" and "object of type object" in reply.message


def test_an_output_flood_is_capped_not_fatal(sandbox):
    reply = call(sandbox, "flood", timeout=20)
    # 20 MB of prints against a 4 MB file limit: the write fails inside the child, which keeps serving
    assert not reply.ok and "File too large" in reply.message or reply.ok
    assert call(sandbox, "double", np.ones(1, dtype=np.float32)).ok


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot start here")
def test_bubblewrap_hides_the_reference_and_kills_leftover_processes(sandbox):
    assert sandbox.level == "bubblewrap"
    reply = call(sandbox, "read_reference")
    assert not reply.ok and "No such file or directory" in reply.message
    pid_inside = call(sandbox, "leave_a_process").value["value"]
    assert isinstance(pid_inside, int)
    sandbox.close()
    deadline = time.monotonic() + 5.0  # killed at close; on a busy machine the kernel may take a moment to reap
    while True:
        leftovers = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p) == "sleep\x00300\x00"]
        if not leftovers or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not leftovers


def test_the_child_is_in_its_cgroup_when_there_is_one(sandbox):
    """Checked by the parent from /proc/PID/cgroup before the submission is loaded; a failed join is a note."""
    if sandbox._cgroup is None:
        pytest.skip("no cgroup could be made here")
    assert sandbox._cgroup.contains(sandbox.proc.pid) and sandbox.proc.pid in sandbox._members()
    assert not sandbox._cgroup.contains(os.getpid())  # the grader itself is not in it
    assert not any("control group" in note for note in sandbox.notes)


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def test_process_level_still_survives_a_dying_child(tmp_path):
    folder = make_submission(tmp_path, {"hw4.py": CODE})
    with Sandbox(submission_dir=folder, code_file=folder / "hw4.py", answers_file=None,
                 isolation_level="process", limits=Limits(timeout_s=5)) as box:
        assert box.start().ok and box.level == "process"
        assert call(box, "die").kind == "died"
        assert call(box, "double", np.ones(1, dtype=np.float32)).ok


def test_forced_level_is_validated():
    with pytest.raises(ValueError, match="unknown isolation level"):
        choose_level("chroot")


def test_bubblewrap_mounts_the_private_tmp_before_binds_that_live_under_tmp(tmp_path):
    """Regression: a checkout (and its .venv) under /tmp was hidden by the child's private /tmp."""
    from grader.sandbox.isolation import bwrap_argv

    argv = bwrap_argv(workdir=tmp_path, grader_pkg=ROOT / "grader", protected=[], gpu=False)
    tmpfs_at = argv.index("/tmp") - 1
    assert argv[tmpfs_at] == "--tmpfs"
    binds = [i for i, a in enumerate(argv) if a in ("--ro-bind", "--bind")]
    under_tmp = [i for i in binds if argv[i + 1].startswith("/tmp/") or argv[i + 2].startswith("/tmp/")]
    assert all(i > tmpfs_at for i in under_tmp)
