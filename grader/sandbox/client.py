"""The parent's side of the sandbox: start the child, send requests, survive anything it does.

A `Sandbox` owns one child at a time. Every request has a time limit; if the
child dies, hangs, floods its output or answers garbage, the request gets a
`Reply` that says so in a sentence, the child is killed (with everything it
spawned) and a fresh one is started and loaded on the next request.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader import protocol
from grader.sandbox import cgroups, isolation

# A constant program text (never built from data): put the grader package on
# the path and hand over to the child's main.
BOOTSTRAP = "import sys; sys.path.insert(0, sys.argv[1]); from grader.child.main import main; main(sys.argv[2:])"
GRADER_PKG = Path(__file__).resolve().parent.parent
# A request may leave a few processes behind (they are stopped); more is a fork bomb and fails it.
MAX_LEFT_BEHIND = 8
OP_PHRASES = {"load": "loading the submission", "call": "running the function", "module_info": "building and running the module",
              "connectivity": "probing the module", "train": "training the model",
              "train_loop": "running the training loop"}


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 30.0
    startup_timeout_s: float = 120.0
    memory_mb: int = 4096
    cpu_s: int = 3600
    max_file_mb: int = 64
    max_processes: int = 256
    max_reply_mb: int = 512
    threads: int | None = None


@dataclass
class Reply:
    ok: bool
    value: Any = None
    kind: str = ""  # student | not_plain | internal | timeout | died | protocol | not_loaded
    message: str = ""
    where: str | None = None

    def describe(self) -> str:
        return self.message + (f" ({self.where})" if self.where else "")


@dataclass
class LoadReport:
    ok: bool
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    answers: dict[str, Any] | None = None
    answers_error: str | None = None
    output_tail: str = ""
    # Statements graded code needed that failed at load: {names, where, code, error, targets} (see child ops).
    needed_failed: list[dict[str, Any]] = field(default_factory=list)
    # For statements skipped at load: the names each would have defined -> "where (`code`)".
    skipped_defines: dict[str, str] = field(default_factory=dict)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class Sandbox:
    """One student submission, loaded once in an isolated child, answering requests."""

    def __init__(self, *, submission_dir: Path, code_file: Path | None, answers_file: Path | None,
                 load_mode: str = "definitions", limits: Limits = Limits(), protected: list[Path] | None = None,
                 isolation_level: str | None = None, device: str = "cpu", load_targets: list[str] | None = None,
                 warm_export: bool = False) -> None:
        self.submission_dir = submission_dir.resolve()
        # Whether the child runs one torch.export of a grader-owned model at start-up, before any student code:
        # the first export in a process costs seconds (torch._dynamo's import and first trace), which then
        # overlaps with the parent's own start-up instead of delaying the first model check.
        self.warm_export = warm_export
        self.load_targets = load_targets  # names the checks use: statements they need run at load
        self.code_file, self.answers_file = code_file, answers_file
        self.load_mode, self.limits, self.device = load_mode, limits, device
        self.protected = [p.resolve() for p in (protected or [])]
        self.level = isolation.choose_level(isolation_level)
        self.proc: subprocess.Popen[bytes] | None = None
        self.load_report: LoadReport | None = None
        self.restarts = 0
        self.notes: list[str] = []
        self._tmp = Path(tempfile.mkdtemp(prefix="grader-sandbox-"))
        self._slot: isolation.UidSlot | None = None  # the student uid this sandbox holds (uid level)
        self._locked: list[str] | None = None  # its hold on the protected paths (uid level)
        self._cgroup: cgroups.Cgroup | None = None
        self._req_w = self._rep_r = -1
        self._output: Any = None
        self._spawned = False  # a child is running whose hello has not been read yet (see `spawn`)
        self._workdir, self._inside = self._tmp, ""

    # lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _prepare_workdir(self) -> Path:
        """A fresh copy of the submission for each child: what one run deletes, the next still has."""
        workdir = self._tmp / f"work{self.restarts}"
        self._copy_in(self.submission_dir, workdir)
        return workdir

    def _copy_in(self, folder: Path, workdir: Path) -> None:
        shutil.copytree(folder, workdir, symlinks=True, dirs_exist_ok=True)
        if self._slot is not None:
            for root, dirs, files in os.walk(workdir):
                for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                    os.chown(name, self._slot.user.uid, self._slot.user.gid, follow_symlinks=False)

    def fill(self, folder: Path) -> None:
        """Give a child spawned from an empty folder (a spare: `grader.engine.spawn_spare`) its submission.

        Only between `spawn` and `start`: the child has run nothing but the grader's start-up, and reads its
        folder first at the load request, so it then sees exactly what one spawned for `folder` sees."""
        if not self._spawned or any(self._workdir.iterdir()):
            raise RuntimeError("fill() is for a spawned, unstarted child of an empty folder")
        self._copy_in(folder, self._workdir)
        self.submission_dir = folder.resolve()

    def _child_path(self, workdir: Path, inside: str, real: Path | None) -> str | None:
        if real is None:
            return None
        rel = real.resolve().relative_to(self.submission_dir)
        return f"{inside}/{rel}"

    def _hold_uid(self) -> None:
        """Take a student uid for this sandbox's lifetime and lock the protected paths away from it.

        Both happen once per sandbox, not per child: the uid stays this
        sandbox's across restarts, and the paths stay locked until `close`.
        """
        if self._slot is None:
            self._slot = isolation.UidSlot.acquire(isolation.student_users())
            isolation.reap_user(self._slot.user)  # whatever a grader that died while holding it left running
        if self._locked is None:
            self._locked = isolation.lock_protected(self.protected, isolation.student_users())

    def _join_cgroup(self, pid: int) -> None:
        """Put the child in its cgroup before it is sent any student code, and check that it is there."""
        if self._cgroup is None:
            return
        if self._cgroup.add(pid):
            return
        self._cgroup.remove()
        self._cgroup = None
        # Detached processes are still caught by bubblewrap's PID namespace or by reaping a dedicated uid.
        caught = self.level == "bubblewrap" or (self._slot is not None and self._slot.user.dedicated)
        note = ("The sandbox could not place the process running the submission in its control group: only "
                "per-process limits applied" + ("" if caught else ", and processes it detached may have outlived it")
                + ".")
        if note not in self.notes:
            self.notes.append(note)

    def _why_not(self) -> str:
        """Why the child cannot run at this level, if that is known (the uid level's start-up probe)."""
        problem = isolation.uid_level_problem() if self.level == "unprivileged-uid" else None
        return f" (the unprivileged-uid level cannot run here: {problem})" if problem else ""

    def spawn(self) -> LoadReport | None:
        """Start a child without waiting for it: it imports torch while the caller goes on (`start` loads it).

        The child runs only the grader's own start-up until `start` sends the load request, so it may be
        spawned before the rubric is fully loaded. Returns a failed `LoadReport` if it could not be started.
        """
        self._kill()
        if self.level == "unprivileged-uid":
            self._hold_uid()
        workdir = self._prepare_workdir()
        limits = {"memory_mb": self.limits.memory_mb, "cpu_s": self.limits.cpu_s,
                  "max_file_mb": self.limits.max_file_mb, "max_processes": self.limits.max_processes,
                  "threads": self.limits.threads, "max_reply_mb": self.limits.max_reply_mb,
                  "warm_export": self.warm_export}
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONHASHSEED": "0", "HOME": "/tmp", "MPLBACKEND": "Agg",
               "OMP_WAIT_POLICY": "PASSIVE"}  # before torch loads: see grader/__init__.py
        if self.limits.threads:
            env["OMP_NUM_THREADS"] = str(self.limits.threads)
        if self.device == "cuda" and "CUDA_VISIBLE_DEVICES" in os.environ:
            env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        user = group = None
        if self.level == "bubblewrap":
            prefix = isolation.bwrap_argv(workdir=workdir, grader_pkg=GRADER_PKG, protected=self.protected,
                                          gpu=self.device == "cuda")
            for key, value in env.items():
                prefix += ["--setenv", key, value]
            child_root, inside = isolation.CHILD_ROOT, isolation.SUBMISSION_MOUNT
            cwd = None
        else:
            link_root = self._tmp / "child-root"
            link_root.mkdir(exist_ok=True)
            if not (link_root / "grader").exists():
                (link_root / "grader").symlink_to(GRADER_PKG)
            prefix, child_root, inside, cwd = [], str(link_root), str(workdir), workdir
            if self.level == "unprivileged-uid" and self._slot is not None:
                user, group = self._slot.user.uid, self._slot.user.gid
                # The child may enter its own folder (its uid's, mode 700) but list nothing here:
                # the output file and other children's folders are not its business.
                os.chmod(self._tmp, 0o711)
                os.chmod(link_root, 0o755)
                os.chmod(workdir, 0o700)
                env["HOME"] = str(workdir)
        python = isolation.child_python() if self.level == "unprivileged-uid" else sys.executable
        argv = [*prefix, python, "-I", "-c", BOOTSTRAP, child_root, str(req_r), str(rep_w), json.dumps(limits)]
        self._cgroup = cgroups.create(max_processes=self.limits.max_processes, memory_mb=self.limits.memory_mb)
        if self._cgroup is not None and user is None:
            # The shell joins the cgroup, then becomes the child: no window in
            # which it could fork outside it.
            join = " ".join(f"echo $$ > {f};" for f in self._cgroup.procs_files)
            argv = ["/bin/sh", "-c", join + ' exec "$@"', "sh", *argv]
        self._output = open(self._tmp / f"output{self.restarts}.txt", "w+b")
        os.chmod(self._output.name, 0o600)  # the child writes through its inherited descriptor
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._output,
                                         stderr=subprocess.STDOUT, pass_fds=(req_r, rep_w), env=env, cwd=cwd,
                                         start_new_session=True, user=user, group=group,
                                         extra_groups=[] if user is not None else None)
        except OSError as exc:  # e.g. the student uid cannot run this Python
            for fd in (req_r, req_w, rep_r, rep_w):
                os.close(fd)
            self.load_report = LoadReport(ok=False, errors=[f"The sandbox could not start: {exc}{self._why_not()}"])
            return self.load_report
        # At the uid level the child cannot join its cgroup itself (it has no right to once it is not root):
        # the parent moves it there now. Either way it is there before the load request, that is, before
        # any student code runs; the child runs only the grader's own start-up until then.
        self._join_cgroup(self.proc.pid)
        os.close(req_r)
        os.close(rep_w)
        self._req_w, self._rep_r = req_w, rep_r
        self._workdir, self._inside = workdir, inside
        self._spawned = True
        return None

    def start(self) -> LoadReport:
        """Start a child (unless `spawn` already did) and load the submission into it; returns what loading found."""
        if not self._spawned:  # a spawned child that died starting up is reported by the hello below
            failed = self.spawn()
            if failed is not None:
                return failed
        self._spawned = False
        workdir, inside = self._workdir, self._inside
        hello = self._receive(self.limits.startup_timeout_s, "starting up")
        if not hello.ok:
            self.load_report = LoadReport(ok=False, errors=[f"The sandbox could not start: {hello.message}"
                                                            f"{self._why_not()}"], output_tail=self.output_tail())
            return self.load_report
        reply = self.request({"op": "load", "code_path": self._child_path(workdir, inside, self.code_file),
                              "answers_path": self._child_path(workdir, inside, self.answers_file),
                              "mode": self.load_mode, "targets": self.load_targets,
                              "need_seconds": self.limits.timeout_s / 3}, timeout=self.limits.timeout_s, _loading=True)
        if reply.ok and isinstance(reply.value, dict):
            v = reply.value
            answers = v.get("answers")
            self.load_report = LoadReport(
                ok=not v.get("errors"), errors=_strings(v.get("errors")), skipped=_strings(v.get("skipped")),
                names=_strings(v.get("names")), answers=answers if isinstance(answers, dict) else None,
                answers_error=v.get("answers_error") if isinstance(v.get("answers_error"), str) else None,
                output_tail=self.output_tail(), needed_failed=_failures(v.get("needed_failed")),
                skipped_defines=_string_map(v.get("skipped_defines")))
        else:
            what = reply.message if reply.ok is False else "the loader returned an unexpected reply"
            self.load_report = LoadReport(ok=False, errors=[f"Loading the submission failed: {what}"],
                                          output_tail=self.output_tail())
        return self.load_report

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def request(self, message: dict[str, Any], *, timeout: float | None = None, _loading: bool = False) -> Reply:
        """Send one request; never raises for anything the child does."""
        if not _loading and not self.alive():
            self.restarts += 1
            self.start()
            if not self.alive():
                return Reply(ok=False, kind="not_loaded", message="the submission could not be loaded into a fresh sandbox")
        before = self._members() if not _loading else set()
        try:
            protocol.write_message(self._req_w, message)
        except OSError:
            return self._died("while receiving the request")
        reply = self._receive(self.limits.timeout_s if timeout is None else timeout, OP_PHRASES.get(message.get("op"), "answering a request"))
        if not _loading and self.alive():
            left = self._members() - before
            if len(left) > MAX_LEFT_BEHIND:  # a fork bomb: its copies would slow every later check down
                self._kill()
                return Reply(ok=False, kind="processes", message=f"left {len(left)} processes running when it "
                             "returned (a fork bomb?); they were all stopped")
            if left:  # a helper never waited for: stopped, and the answer stands
                self._stop_new(before)
        return reply

    def _stop_new(self, before: set[int]) -> None:
        """Kill the sandbox's processes that were not there before the request (the child itself was)."""
        for _ in range(25):
            new = self._members() - before
            if not new:
                return
            for pid in new:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.02)

    def _members(self) -> set[int]:
        """The live processes of this sandbox: its cgroup's; without one, its process group's (zombies left out)."""
        if self._cgroup is not None:
            return self._cgroup.pids()
        if self.proc is None:
            return set()
        members = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", "rb") as f:
                        fields = f.read().rsplit(b")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
                except (OSError, IndexError):
                    continue
                if len(fields) > 2 and int(fields[2]) == self.proc.pid and fields[0] != b"Z":
                    members.add(int(entry))
        return members

    def _receive(self, timeout: float, what: str) -> Reply:
        try:
            raw = protocol.read_message(self._rep_r, timeout=timeout, max_bytes=self.limits.max_reply_mb << 20)
        except protocol.ReplyTimeout:
            self._kill()
            return Reply(ok=False, kind="timeout", message=f"did not finish within the {timeout:g} s time limit (an infinite loop, or code far too slow?)")
        except protocol.PeerClosed:
            return self._died(f"while {what}")
        except protocol.ProtocolError as exc:
            self._kill()
            return Reply(ok=False, kind="protocol", message=f"sent back something that is not plain data: {exc}")
        if not isinstance(raw, dict) or type(raw.get("ok")) is not bool:
            self._kill()
            return Reply(ok=False, kind="protocol", message="sent back a malformed reply")
        if raw["ok"]:
            return Reply(ok=True, value=raw.get("value"))
        return Reply(ok=False, kind=str(raw.get("kind", "student")), message=str(raw.get("message", "")),
                     where=raw.get("where") if isinstance(raw.get("where"), str) else None)

    def _died(self, when: str) -> Reply:
        code = None
        if self.proc is not None:
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        oom = self._cgroup is not None and self._cgroup.out_of_memory()
        self._kill()
        # Under bubblewrap the child's death by signal N arrives as exit status 128 + N.
        sig = -code if code is not None and code < 0 else (code - 128 if code and 128 < code < 160 and self.level == "bubblewrap" else None)
        sig_name = _signal_name(-sig) if sig else None
        if oom or (sig_name == "SIGKILL" and "MemoryError" in self.output_tail()):
            msg = f"ran out of memory (limit {self.limits.memory_mb} MB)"
        elif code is None:
            msg = "stopped answering"
        elif sig_name is not None:
            msg = {"SIGSEGV": "crashed with a segmentation fault", "SIGXCPU": "used up its CPU-time limit",
                   "SIGKILL": "was killed (out of memory, or it killed itself)"}.get(sig_name, f"was killed by {sig_name}")
        else:
            msg = f"exited with code {code} (does the code call sys.exit() or os._exit()?)"
        return Reply(ok=False, kind="died", message=f"the process running the submission {msg} {when}")

    def output_tail(self, limit: int = 2000) -> str:
        """The last of what the student's code printed, cut with a visible marker."""
        if self._output is None:
            return ""
        try:
            self._output.flush()
            size = os.fstat(self._output.fileno()).st_size
            self._output.seek(max(0, size - limit))
            tail = self._output.read().decode("utf-8", errors="replace")
        except (OSError, ValueError):
            return ""
        return ("[... output cut ...]\n" if size > limit else "") + tail

    def _kill(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None
        if self._slot is not None:
            # Daemons (setsid, double fork) escape the process group, and the cgroup where there is none.
            isolation.reap_user(self._slot.user)
        for fd in (self._req_w, self._rep_r):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._req_w = self._rep_r = -1
        self.proc = None
        self._spawned = False

    def close(self) -> None:
        self._kill()
        if self._output is not None:
            self._output.close()
            self._output = None
        # Paths are unlocked only once nothing of the student's runs any more (dedicated uid: all reaped).
        if self._locked is not None:
            isolation.unlock_protected(self._locked)
            self._locked = None
        if self._slot is not None:
            self._slot.release()
            self._slot = None
        shutil.rmtree(self._tmp, ignore_errors=True)


def _failures(value: Any) -> list[dict[str, Any]]:
    """The child's list of failed needed statements, keeping only well-formed entries."""
    out = []
    for item in value[:200] if isinstance(value, list) else []:
        if isinstance(item, dict) and all(isinstance(item.get(k), str) for k in ("where", "code", "error")):
            out.append({"names": _strings(item.get("names")), "targets": _strings(item.get("targets")),
                        "where": item["where"][:200], "code": item["code"][:200], "error": item["error"][:600]})
    return out


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k[:100]: v[:300] for k, v in list(value.items())[:200] if isinstance(k, str) and isinstance(v, str)}


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
