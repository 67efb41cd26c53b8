"""Start the judge process and talk to it: a fork server that runs each job in a fresh, limited process.

The judge is forked from the trusted parent so that it costs no second
``import torch`` (about 3.5 s here): a *zygote* is forked once, before the
parent has run any torch operation, and forks one worker per job. The zygote
itself never runs a torch operation, so each worker starts with torch in a
clean state. (A process forked after torch has run parallel operations
hangs at its first one: OpenMP's thread pool does not survive fork. The
zygote checks that with a throwaway worker when it starts; if it fails,
`Judge.start` launches a fresh interpreter as the zygote instead, paying
the import once.)

The zygote forks a worker, which applies memory and CPU limits (rlimits)
and then serves jobs one at a time over `grader.protocol`, staying warm
between them as the sandbox child does (a cold process trains a LeNet
several seconds slower). The zygote enforces each job's time limit; a
worker that overruns, dies or fails a job is killed and the next job gets
a fresh one. Nothing here imports student code or `grader.child`.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch  # noqa: F401  (the zygote needs it, and the baseline below is taken right after it)

from grader import protocol
from grader.rlimits import cap

GRADER_ROOT = Path(__file__).resolve().parent.parent.parent
# A constant program text for the spawned zygote (never built from data).
BOOTSTRAP = "import sys; sys.path.insert(0, sys.argv[1]); from grader.judge.server import main; main(sys.argv[2:])"
DEFAULT_MEMORY_MB = 4096
MAX_REPLY_BYTES = 64 << 20
# Seconds beyond a job's own time limit that the parent waits for the zygote's answer.
MARGIN_S = 10.0
HEALTH_TIMEOUT_S = 10.0
SPAWN_TIMEOUT_S = 180.0  # a fresh interpreter importing torch on a busy machine


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1 << 20


# Threads right after importing torch (it starts one of its own). More later means an OpenMP pool exists:
# a fork could not run torch, so the zygote is spawned at once instead of failing its health check.
_BASELINE_THREADS = _threads()


@dataclass
class JudgeReply:
    ok: bool
    value: Any = None
    kind: str = ""  # refused | student | timeout | died | internal | unavailable
    message: str = ""


def _apply_limits(memory_mb: int, cpu_s: int) -> None:
    for which, value in ((resource.RLIMIT_DATA, memory_mb << 20), (resource.RLIMIT_CPU, cpu_s), (resource.RLIMIT_CORE, 0)):
        cap(which, value)


def _answer(job: dict[str, Any]) -> dict[str, Any]:
    """One job's reply message (in the worker)."""
    from grader.judge import worker

    import torch

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    try:
        return {"ok": True, "value": worker.run(job)}
    except worker.JobError as exc:
        return {"ok": False, "kind": "refused", "message": str(exc)}
    except MemoryError:
        return {"ok": False, "kind": "died", "message": f"ran out of memory (limit {job.get('memory_mb', DEFAULT_MEMORY_MB)} MB)"}
    except Exception as exc:  # the graph itself failed on the judge's input: the student's model
        text = str(exc).strip().splitlines()
        return {"ok": False, "kind": "student", "message": f"{type(exc).__name__}: {(text[0] if text else '')[:400]}"}


def _work(limits: tuple[int, int], job_fd: int, reply_fd: int) -> None:
    """The forked worker: limits, then jobs until the zygote closes the pipe; never returns."""
    code = 0
    try:
        _apply_limits(*limits)
        while True:
            try:
                job = protocol.read_message(job_fd)
            except protocol.PeerClosed:
                break
            protocol.write_message(reply_fd, _answer(job))
    except BaseException:  # noqa: BLE001 - the worker must exit whatever happens
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


@dataclass
class _Worker:
    """A worker of the zygote: it keeps serving jobs (warm, like the sandbox child) until it fails or overruns."""

    pid: int
    job_w: int
    reply_r: int
    limits: tuple[int, int]

    def stop(self) -> int:
        for fd in (self.job_w, self.reply_r):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return os.waitpid(self.pid, 0)[1]


def _fork_worker(limits: tuple[int, int], request_fd: int, reply_fd: int) -> _Worker:
    job_r, job_w = os.pipe()
    reply_r, reply_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for fd in (job_w, reply_r, request_fd, reply_fd):
            os.close(fd)
        _work(limits, job_r, reply_w)
    os.close(job_r)
    os.close(reply_w)
    return _Worker(pid, job_w, reply_r, limits)


def _healthy(seconds: float = HEALTH_TIMEOUT_S) -> bool:
    """Whether a worker forked from here can run a parallel torch operation (it hangs if the process we were
    forked from had already run one: OpenMP's thread pool does not survive fork)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            import torch

            torch.set_num_threads(2)
            code = 0 if float(torch.ones(1 << 20).sum()) == float(1 << 20) else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return False


def serve(request_fd: int, reply_fd: int) -> None:
    """The zygote's loop: jobs go to a warm worker in order, until the parent closes the pipe.

    It first says whether its workers can run torch (see `_healthy`); the parent replaces an unhealthy one.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; it closes our pipe
    import torch  # noqa: F401  (usually imported already; importing runs no operation)

    from grader.judge import worker  # noqa: F401  (imported once here rather than in every worker)

    protocol.write_message(reply_fd, {"ok": True, "healthy": _healthy()})
    current: _Worker | None = None
    while True:
        try:
            job = protocol.read_message(request_fd)
        except (protocol.PeerClosed, protocol.ProtocolError, OSError):
            if current is not None:
                current.stop()
            return
        if not isinstance(job, dict):
            protocol.write_message(reply_fd, {"ok": False, "kind": "internal", "message": "malformed job"})
            continue
        timeout = float(job.get("timeout", 60.0))
        limits = (int(job.get("memory_mb", DEFAULT_MEMORY_MB)), int(job.get("cpu_s", 3600)))
        if current is not None and current.limits != limits:
            current.stop()
            current = None
        if current is None:
            current = _fork_worker(limits, request_fd, reply_fd)
        reply: dict[str, Any] | None
        try:
            protocol.write_message(current.job_w, job)
            reply = protocol.read_message(current.reply_r, timeout=timeout, max_bytes=MAX_REPLY_BYTES)
        except protocol.ReplyTimeout:
            reply = {"ok": False, "kind": "timeout", "message": f"did not finish within {timeout:g} s"}
        except (protocol.PeerClosed, protocol.ProtocolError, OSError):
            reply = None
        if reply is None or not reply.get("ok"):  # a failed job may have left the worker in any state: replace it
            status = current.stop()
            current = None
            if reply is None:
                sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
                what = {signal.SIGKILL: "was killed (out of memory?)", signal.SIGXCPU: "used up its CPU-time limit",
                        signal.SIGSEGV: "crashed"}.get(sig, f"was killed by signal {sig}") if sig else f"exited with status {status}"
                reply = {"ok": False, "kind": "died", "message": f"the judge's worker {what}"}
        protocol.write_message(reply_fd, reply)


def main(argv: list[str]) -> None:
    """Entry point of a spawned zygote: ``<request fd> <reply fd>``."""
    import torch  # noqa: F401  (imported once here, so that every worker forked from us has it)

    serve(int(argv[0]), int(argv[1]))


class Judge:
    """The parent's handle on the zygote."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.req_w = self.rep_r = -1
        self.forked = False
        # One job at a time on the pipe: submissions graded in threads of one process share this judge.
        self.lock = threading.RLock()

    def start(self) -> None:
        """Fork the zygote (cheap); if its workers could not run torch, launch a fresh interpreter instead."""
        if _threads() > _BASELINE_THREADS or not self._start(fork=True):
            self.close()
            if not self._start(fork=False):
                self.close()

    def _start(self, *, fork: bool) -> bool:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        if fork:
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    os.close(req_w)
                    os.close(rep_r)
                    os.setpgid(0, 0)  # out of the terminal's process group: the parent decides when we end
                    serve(req_r, rep_w)
                except BaseException:  # noqa: BLE001
                    code = 1
                finally:
                    os._exit(code)
            self.pid, self.forked = pid, True
        else:
            self.proc = subprocess.Popen([sys.executable, "-I", "-c", BOOTSTRAP, str(GRADER_ROOT), str(req_r), str(rep_w)],
                                         pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL, start_new_session=True)
            self.pid, self.forked = self.proc.pid, False
        os.close(req_r)
        os.close(rep_w)
        self.req_w, self.rep_r = req_w, rep_r
        try:
            hello = protocol.read_message(rep_r, timeout=HEALTH_TIMEOUT_S + 10.0 if fork else SPAWN_TIMEOUT_S)
        except (protocol.PeerClosed, protocol.ReplyTimeout, protocol.ProtocolError, OSError):
            return False
        return isinstance(hello, dict) and hello.get("healthy") is True

    def alive(self) -> bool:
        if self.pid is None:
            return False
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return done == 0

    def request(self, job: dict[str, Any], *, timeout: float) -> JudgeReply:
        with self.lock:
            return self._request(job, timeout=timeout)

    def _request(self, job: dict[str, Any], *, timeout: float) -> JudgeReply:
        if not self.alive():
            self.close()
            self.start()
        try:
            protocol.write_message(self.req_w, {**job, "timeout": timeout})
            raw = protocol.read_message(self.rep_r, timeout=timeout + MARGIN_S, max_bytes=MAX_REPLY_BYTES)
        except (OSError, protocol.PeerClosed, protocol.ReplyTimeout, protocol.ProtocolError) as exc:
            self.close()
            return JudgeReply(False, kind="unavailable", message=f"the judge process failed ({type(exc).__name__})")
        if not isinstance(raw, dict) or type(raw.get("ok")) is not bool:
            self.close()
            return JudgeReply(False, kind="internal", message="the judge sent a malformed reply")
        if raw["ok"]:
            return JudgeReply(True, value=raw.get("value"))
        return JudgeReply(False, kind=str(raw.get("kind", "internal")), message=str(raw.get("message", "")))

    def close(self) -> None:
        for fd in (self.req_w, self.rep_r):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.req_w = self.rep_r = -1
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
        self.pid, self.proc = None, None


_JUDGE: Judge | None = None
_OWNER: int | None = None
_START_LOCK = threading.Lock()


def get_judge() -> Judge:
    """This process's judge, started on first use (call `ensure_started` early to fork it cheaply)."""
    global _JUDGE, _OWNER
    with _START_LOCK:
        if _JUDGE is None or _OWNER != os.getpid():  # a forked copy of a process must not share its parent's judge
            _JUDGE, _OWNER = Judge(), os.getpid()
            _JUDGE.start()
        return _JUDGE


def ensure_started() -> None:
    """Start the judge now if it is not running: call it before the process runs any torch operation."""
    judge = get_judge()
    with judge.lock:
        if not judge.alive():
            judge.close()
            judge.start()

