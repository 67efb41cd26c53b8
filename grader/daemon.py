"""`grader daemon`: a warm process, one per user, that spares `grader check` its start-up.

A quick `grader check` spends most of its time starting: this process imports torch (3.5-4 s here) for the
checks while the sandbox child imports torch and torch._dynamo and runs a warm-up export (about 8 s), before
anything is graded. An instructor or TA checking one submission after another pays that each time. The
daemon pays it ahead:

- The daemon imports torch and the grader's parent-side modules once, then only forks. It never runs a tensor
  operation, a rubric, a reference or a submission.
- Each check sent to it runs in a fresh fork (a *worker*) with the caller's arguments, working directory,
  environment, umask and standard streams (passed over the socket, so the terminal is the caller's): the code
  a `grader check` runs directly, with the same results, files and exit code.
- Each check leaves a *spare* for the next: a worker forked ahead that spawns a sandbox child for the same
  rubric and options (`grader.engine.spawn_spare`, from the rubric's YAML alone) and waits. The next check
  is handed to it; `prestart` uses that child when the rubric, options and limits match, and spawns one as
  usual otherwise. A spare child has never seen a submission: the check's files are copied into its empty
  folder before its first request, and it serves that check alone, like every child.

Only its user can use it: the socket is in a folder of the user's with mode 0700, and a peer of another uid
is refused (SO_PEERCRED). Requests are bounded JSON. A caller runs the check itself when its grader code
differs (the socket's name holds a hash of the code and the Python: `grader.version`) or its environment
differs in what is read once at import (thread counts, CUDA and Python settings). The daemon leaves after
`--idle-minutes` without a request. `grader check --no-daemon` (or GRADER_NO_DAEMON=1) never uses one.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import select
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.errors import UsageError
from grader.version import code_digest

MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with its NUL
MAX_MESSAGE = 1 << 20  # a request: arguments, a folder and an environment
REQUEST_TIMEOUT_S = 10.0  # for a connected peer to send its request
# For a daemon to take a check (it answers in milliseconds, or after another peer's request): one that does
# not (stopped with Ctrl-Z or SIGSTOP, hung) must not hang every `grader check`, which then runs here.
ANSWER_TIMEOUT_S = 30.0
INTERRUPT_GRACE_S = 30.0  # for a worker whose caller is gone to leave after SIGINT, before SIGKILL
# Environment read once, when the daemon imported torch and started Python: a caller whose values differ
# would not get what it asked for, so it runs the check itself.
IMPORT_TIME_ENV = ("OMP_", "MKL_", "KMP_", "OPENBLAS_", "GOMP_", "CUDA_", "TORCH", "PYTORCH_", "PYTHON", "LD_")
# What the daemon imports before it serves: everything `grader check` imports after its prestart.
PRELOAD = ("torch", "grader.cli", "grader.engine", "grader.checks", "grader.judge.server", "grader.judge.worker",
           "grader.rubric.load", "grader.report.terminal", "grader.report.gradescope", "grader.course",
           "grader.training.label_files", "rich.progress", "rich.table")


# --- where it lives -----------------------------------------------------------------------------

def identity() -> str:
    """The grader code and the Python that runs it: a daemon serves only callers with the same."""
    return hashlib.sha256(f"{code_digest()}\0{sys.executable}".encode()).hexdigest()[:16]


def home() -> Path:
    """The user's folder for daemons: GRADER_DAEMON_DIR, else $XDG_RUNTIME_DIR/grader, else /tmp/grader-daemon-UID."""
    if os.environ.get("GRADER_DAEMON_DIR"):
        return Path(os.environ["GRADER_DAEMON_DIR"]).resolve()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "grader"
    return Path(tempfile.gettempdir()) / f"grader-daemon-{os.geteuid()}"


def private_home(create: bool) -> Path | None:
    """`home()` if it is a folder of this user's that nobody else may enter (created so with `create`)."""
    folder = home()
    if create:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise UsageError(f"{folder} must be a folder of this user's with mode 0700 (it is where the grader daemon's "
                         f"socket lives): remove it, or set GRADER_DAEMON_DIR to another folder")
    if len(os.fsencode(socket_path(folder))) > MAX_SOCKET_PATH:
        raise UsageError(f"{folder} is too long a path for the grader daemon's socket in it (a socket's path may "
                         f"have {MAX_SOCKET_PATH} bytes): set GRADER_DAEMON_DIR to a shorter one")
    seen = _sandbox_view(folder)
    if seen is not None:
        raise UsageError(f"{folder} is inside {seen}, which the bubblewrap sandbox shows student code (as this "
                         f"user, to whom the socket answers): set GRADER_DAEMON_DIR to a folder outside it")
    return folder


def _sandbox_view(folder: Path) -> Path | None:
    """The folder bound into every bubblewrap child (`isolation.bwrap_argv`) that holds `folder`, if one does.

    A socket there could be connected to from the child (a socket's mode is checked, not the mount's
    read-only flag), and the kernel names its peer as this user, whose uid the child's namespace maps."""
    from grader.sandbox import isolation

    bound = [Path(top) for top in ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64")]
    bound += [*isolation.python_dirs(), Path(__file__).resolve().parent]
    return next((b for b in bound if b.exists() and isolation._inside(folder, b)), None)


def socket_path(folder: Path) -> Path:
    return folder / f"daemon-{identity()}.sock"


def import_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_ENV)}


# --- messages: a 4-byte length, then JSON; descriptors ride with the length ---------------------

class Closed(Exception):
    """The peer closed the connection before a whole message came."""


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> None:
    data = json.dumps(message).encode()
    header = struct.pack(">I", len(data))
    if fds:
        socket.send_fds(sock, [header], list(fds))
    else:
        sock.sendall(header)
    sock.sendall(data)


def _exactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 65536))
        if not chunk:
            raise Closed()
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive(sock: socket.socket, max_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """One message and the descriptors sent with it (at most `max_fds`; more are closed, and refused)."""
    header, fds, flags, _ = socket.recv_fds(sock, 4, max(max_fds, 1))
    try:
        if not header:
            raise Closed()
        if len(fds) > max_fds or flags & socket.MSG_CTRUNC:
            raise ValueError("unexpected descriptors")
        header += _exactly(sock, 4 - len(header))
        (size,) = struct.unpack(">I", header)
        if size > MAX_MESSAGE:
            raise ValueError(f"a message of {size} bytes")
        message = json.loads(_exactly(sock, size))
        if not isinstance(message, dict):
            raise ValueError("a message must be an object")
        return message, fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


# --- the caller's side --------------------------------------------------------------------------

def delegate(argv: list[str]) -> int | None:
    """Run `grader ARGV` in this user's daemon and return its exit code; None: no daemon of this grader and
    Python is running, or it cannot take this caller (it says why), and the caller runs the command itself."""
    if os.environ.get("GRADER_NO_DAEMON"):
        return None
    try:
        folder = private_home(create=False)
    except UsageError as exc:
        # Another user (or a student uid, where /tmp is shared) may have made that folder: it must not cost a
        # check, which runs here; only `grader daemon start` refuses.
        print(f"grader: not using a grader daemon: {exc}", file=sys.stderr)
        return None
    if folder is None:
        return None
    if not socket_path(folder).exists():
        if others(folder):
            print("grader: a grader daemon of other grader code runs, and this check runs here; to use one of "
                  "this code: grader daemon start (it replaces the old one)", file=sys.stderr)
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(socket_path(folder)))
    except OSError:  # a socket left by a daemon that is gone
        sock.close()
        return None
    umask = os.umask(0)
    os.umask(umask)
    try:
        sock.settimeout(ANSWER_TIMEOUT_S)
        send(sock, {"op": "run", "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask,
                    "cpus": sorted(os.sched_getaffinity(0))}, fds=(0, 1, 2))
        first, _ = receive(sock)
        sock.settimeout(None)  # a check takes as long as it takes
    except TimeoutError:
        sock.close()  # a daemon that takes the request later sees this caller gone, and does not run it
        print(f"grader: the grader daemon did not answer within {ANSWER_TIMEOUT_S:g} s (stopped, or hung?); "
              f"checking here (grader daemon stop; grader daemon start)", file=sys.stderr)
        return None
    except (OSError, Closed, ValueError):
        sock.close()
        return None
    if "refused" in first:
        print(f"grader: not using the grader daemon: {first['refused']}", file=sys.stderr)
        return None
    final, worker = first, 0  # "died": its worker ended before it began
    try:
        if "accepted" in first:
            worker = int(first["accepted"])
            final, _ = receive(sock)
    except KeyboardInterrupt:
        try:
            if worker:
                os.kill(worker, signal.SIGINT)  # the check stops as a direct one does on Ctrl-C: its sandbox closed
            sock.settimeout(30)
            receive(sock)
        except (OSError, Closed, ValueError, KeyboardInterrupt):
            pass
        return 130
    except (OSError, Closed, ValueError):
        final = {"died": "it ended without a word"}
    if "exit" in final:
        return int(final["exit"])
    print(f"grader: the grader daemon's worker for this check died ({final.get('died')}); checking here instead",
          file=sys.stderr)
    return None


def others(folder: Path) -> list[Path]:
    """Sockets of daemons of other grader code run by this Python (the old code of a grader changed in place)."""
    found = []
    for path in folder.glob("daemon-*.sock"):
        if path != socket_path(folder):
            status = request("status", path)
            if status is not None and status.get("executable") == sys.executable:
                found.append(path)
    return found


def request(op: str, path: Path | None = None) -> dict[str, Any] | None:
    """Ask this user's daemon of this grader (or the one at `path`) for `status` or to `stop`; None if none answers."""
    folder = private_home(create=False)
    if folder is None:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(REQUEST_TIMEOUT_S)
            sock.connect(str(path or socket_path(folder)))
            send(sock, {"op": op})
            return receive(sock)[0]
    except (OSError, Closed, ValueError):
        return None


def start(idle_minutes: float, timeout_s: float = 180.0) -> dict[str, Any]:
    """Start a daemon in the background (its own session, its log in the daemon folder), unless one runs;
    wait until it serves and return its status."""
    running = request("status")
    if running is not None:
        return running
    folder = private_home(create=True) or home()
    for old in others(folder):  # its checks run here now: its memory (a spare child is ~0.7 GB) is wasted
        request("stop", old)
    log = open(folder / f"daemon-{identity()}.log", "ab")
    # -P: no folder of the starter's on its import path (a worker changes folder to each caller's).
    proc = subprocess.Popen([sys.executable, "-P", "-m", "grader", "daemon", "start", "--foreground",
                             "--idle-minutes", str(idle_minutes)], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd="/")
    log.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = request("status")
        if status is not None:
            return status
        if proc.poll() is not None:
            status = request("status")  # another start won the race and serves
            if status is not None:
                return status
            raise UsageError(f"the grader daemon did not start (exit {proc.returncode}); see {log.name}")
        time.sleep(0.2)
    raise UsageError(f"the grader daemon did not answer within {timeout_s:.0f} s; see {log.name}")


# --- the daemon's side --------------------------------------------------------------------------

@dataclass
class _WorkerContext:
    """What a worker of the daemon has that a `grader check` run directly has not (see `worker_spare`, `hint`)."""

    hint_fd: int
    spare: Any = None  # a grader.engine.Spare, taken at most once
    taken: Any = None  # ... and once taken: closed (again: `close` is idempotent) when the command is over


_CONTEXT: _WorkerContext | None = None


def take_spare() -> Any:
    """In a daemon's worker: the spare sandbox child it was handed with its check (once); elsewhere None."""
    if _CONTEXT is None:
        return None
    spare, _CONTEXT.spare = _CONTEXT.spare, None
    _CONTEXT.taken = _CONTEXT.taken or spare
    return spare


def used_spare(spare: Any, early: Any) -> None:
    """In a daemon's worker: say whether the check's child is the spare's (counted in `grader daemon status`)."""
    if _CONTEXT is not None and spare is not None and early is not None and early.sandbox is spare.sandbox:
        try:
            os.write(_CONTEXT.hint_fd, b'{"used_spare": true}\n')
        except OSError:
            pass


def hint(rubric_path: Path, *, device: str, isolation: str | None, data_dir: str | None, protect: list[Path]) -> None:
    """In a daemon's worker: ask for a spare made like this check's child, for the next check. Elsewhere nothing."""
    if _CONTEXT is None:
        return
    # The grader's own variables too (GRADER_ISOLATION, GRADER_THREADS, where datasets are...): the spare
    # worker, a fork of the daemon, has the daemon's environment, not this caller's.
    line = json.dumps({"rubric_path": str(Path(rubric_path).resolve()), "device": device, "isolation": isolation,
                       "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
                       "protect": [str(p) for p in protect],
                       "env": {k: v for k, v in os.environ.items() if k.startswith("GRADER_")}}).encode() + b"\n"
    if len(line) <= select.PIPE_BUF:  # one write the daemon reads whole; a longer one is not worth a spare
        try:
            os.write(_CONTEXT.hint_fd, line)
        except OSError:
            pass


@dataclass
class _Spare:
    pid: int
    control: socket.socket
    hint: dict[str, Any]


@dataclass
class _Daemon:
    path: Path
    idle_s: float
    lock_fd: int  # held for the daemon's life; its workers close their copy
    started: float = field(default_factory=time.time)
    last: float = field(default_factory=time.monotonic)
    served: int = 0
    spares_taken: int = 0  # checks handed to a spare worker
    spares_used: int = 0  # ... that used its child (made for the same rubric and options)
    workers: dict[int, socket.socket] = field(default_factory=dict)  # pid -> its caller's connection
    # Workers whose caller hung up, and when they were interrupted (SIGINT, as Ctrl-C does), to kill one that
    # has not left after INTERRUPT_GRACE_S.
    interrupted: dict[int, float] = field(default_factory=dict)
    spare: _Spare | None = None
    stopping: bool = False

    def serve(self, listener: socket.socket) -> None:
        self.env = import_env(dict(os.environ))
        self.hint_r, self.hint_w = os.pipe()
        wake_r, wake_w = os.pipe()
        for fd in (self.hint_r, wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the wakeup descriptor hears it
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._stop)
        selector = self.selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ, "accept")
        selector.register(self.hint_r, selectors.EVENT_READ, "hint")
        selector.register(wake_r, selectors.EVENT_READ, "wake")
        self._own = [listener.fileno(), self.hint_r, wake_r, wake_w, selector.fileno(), self.lock_fd]
        pending = b""
        while not self.stopping:
            for key, _ in selector.select(timeout=5.0):
                if key.data == "accept":
                    try:
                        conn, _ = listener.accept()
                    except OSError:
                        continue
                    self._handle(conn)
                elif isinstance(key.data, tuple):  # ("caller", pid): a running check's caller said something
                    self._caller_readable(key.fileobj, key.data[1])
                elif key.data == "hint":
                    try:
                        pending += os.read(self.hint_r, 65536)
                    except BlockingIOError:
                        pass
                    *lines, pending = pending.split(b"\n")
                    self._heard(lines)
                else:
                    try:
                        os.read(wake_r, 4096)
                    except BlockingIOError:
                        pass
            self._reap()
            self._kill_stuck()
            if not self.workers and time.monotonic() - self.last > self.idle_s:
                print(f"grader daemon: idle for {self.idle_s / 60:g} minutes, leaving", flush=True)
                self.stopping = True
        self._drop_spare()
        signal.set_wakeup_fd(-1)

    def _stop(self, *_: Any) -> None:
        self.stopping = True

    def _handle(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]
            if uid != os.geteuid():
                conn.close()  # another user's: not a word
                return
            conn.settimeout(REQUEST_TIMEOUT_S)
            message, fds = receive(conn, max_fds=3)
            conn.settimeout(None)
            op = message.get("op")
            if op == "status":
                send(conn, self.status())
            elif op == "stop":
                send(conn, {"stopping": True, "pid": os.getpid()})
                self.stopping = True
            elif op == "run":
                self._run(conn, message, fds)
                fds = []
                return  # the connection stays open until its worker ends
            else:
                send(conn, {"refused": f"unknown request {op!r}"})
        except (OSError, Closed, ValueError, RecursionError) as exc:
            print(f"grader daemon: a request was dropped: {type(exc).__name__}: {exc}", flush=True)
        finally:
            for fd in fds:
                os.close(fd)
        conn.close()

    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "socket": str(self.path), "executable": sys.executable, "code": code_digest(),
                "started": self.started, "served": self.served,
                "spares_taken": self.spares_taken, "spares_used": self.spares_used, "running": len(self.workers),
                "spare": self.spare.hint["rubric_path"] if self.spare else None, "idle_minutes": self.idle_s / 60}

    def _run(self, conn: socket.socket, message: dict[str, Any], fds: list[int]) -> None:
        why = _invalid_run(message, fds)
        if why is None and import_env(message["env"]) != self.env:
            differ = sorted(set(import_env(message["env"]).items()) ^ set(self.env.items()))
            why = (f"it was started with other values of {', '.join(sorted({k for k, _ in differ}))}, read once at "
                   f"start-up (restart it from this environment: grader daemon stop; grader daemon start)")
        if why is not None:
            send(conn, {"refused": why})
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        if _hung_up(conn):  # it waited for an answer no longer (`delegate`), and checks by itself
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        self.last = time.monotonic()
        self.served += 1
        spare, self.spare = self.spare, None
        pid = None
        if spare is not None:
            try:
                send(spare.control, message, fds=[conn.fileno(), *fds])
                pid = spare.pid
                self.spares_taken += 1
            except OSError:  # it died meanwhile: a fresh worker instead
                _end(spare.pid)
            spare.control.close()
        if pid is None:
            pid = self._fork(lambda: _work(conn, fds, message, None, self.hint_w))
        for fd in fds:
            os.close(fd)
        self.workers[pid] = conn  # the worker says "accepted" and its exit code; the daemon, its death
        # A caller sends nothing after its request: the connection turns readable only when the caller is gone
        # (killed, its terminal closed, `timeout`). Its check is interrupted then, as a direct one would end.
        self.selector.register(conn, selectors.EVENT_READ, ("caller", pid))

    def _caller_readable(self, conn: socket.socket, pid: int) -> None:
        try:
            data = conn.recv(4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:  # not a word it should say; its check goes on
            return
        # Gone: a check nobody waits for must not go on (it would still write its results file, perhaps
        # after a later check of the same folder wrote its own).
        self.selector.unregister(conn)
        print(f"grader daemon: the caller of worker {pid} hung up; interrupting it", flush=True)
        self.interrupted[pid] = time.monotonic()
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            pass

    def _kill_stuck(self) -> None:
        for pid, since in list(self.interrupted.items()):
            if pid not in self.workers:
                del self.interrupted[pid]
            elif time.monotonic() - since > INTERRUPT_GRACE_S:
                _end(pid)

    def _heard(self, lines: list[bytes]) -> None:
        """Workers' lines: a check used its spare child, or wants one like its own for the next check."""
        wanted = None
        for line in lines:
            try:
                said = json.loads(line)
            except ValueError:
                continue
            if said == {"used_spare": True}:
                self.spares_used += 1
            elif isinstance(said, dict):
                wanted = said  # the newest check's is the one to prepare for
        if wanted is not None:
            self._prepare(wanted)

    def _prepare(self, wanted: dict[str, Any]) -> None:
        if self.spare is not None and self.spare.hint == wanted:
            return
        self._drop_spare()
        control, theirs = socket.socketpair()
        pid = self._fork(lambda: _spare_main(theirs, wanted, self.hint_w), close=[control.fileno()])
        theirs.close()
        self.spare = _Spare(pid=pid, control=control, hint=wanted)

    def _drop_spare(self) -> None:
        if self.spare is not None:
            self.spare.control.close()  # it closes its child and leaves
            self.spare = None

    def _fork(self, body: Any, close: list[int] = ()) -> int:
        pid = os.fork()
        if pid:
            return pid
        try:  # the child: none of the daemon's signal handlers or descriptors but what it needs
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.setpgid(0, 0)  # not in the daemon's process group: signals for the daemon are not the check's
            for fd in [*self._own, *close, *(c.fileno() for c in self.workers.values()),
                       *([self.spare.control.fileno()] if self.spare else [])]:
                try:
                    os.close(fd)
                except OSError:
                    pass
            body()
        except BaseException:  # noqa: BLE001 - a worker never returns into the daemon's loop
            traceback.print_exc()
        os._exit(1)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.workers.pop(pid, None)
            if conn is not None:
                try:
                    self.selector.unregister(conn)
                except (KeyError, ValueError):  # unregistered when its caller hung up
                    pass
                if status != 0:  # it did not say its exit code: the caller checks for itself
                    code = os.waitstatus_to_exitcode(status)
                    why = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
                    try:
                        send(conn, {"died": why})
                    except OSError:
                        pass
                conn.close()
            elif self.spare is not None and pid == self.spare.pid:
                self._drop_spare()


def _hung_up(conn: socket.socket) -> bool:
    """Whether the peer closed its end (it sends nothing after its request)."""
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _end(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _invalid_run(message: dict[str, Any], fds: list[int]) -> str | None:
    env = message.get("env")
    if len(fds) != 3:
        return "the request must carry standard input, output and error"
    if not (isinstance(message.get("argv"), list) and all(isinstance(a, str) for a in message["argv"])
            and isinstance(message.get("cwd"), str) and isinstance(message.get("umask"), int)
            and isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        return "a malformed request"
    return None


def _spare_main(control: socket.socket, wanted: dict[str, Any], hint_fd: int) -> None:
    """A spare worker: spawn a child like the last check's, then wait to be handed the next check."""
    from grader.engine import spawn_spare

    def leave(*_: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, leave)
    spare = None
    try:
        for key in [k for k in os.environ if k.startswith("GRADER_")]:
            del os.environ[key]
        os.environ.update(wanted["env"])
        spare = spawn_spare(Path(wanted["rubric_path"]), device=wanted["device"], isolation=wanted["isolation"],
                            data_dir=wanted["data_dir"], protect=[Path(p) for p in wanted["protect"]])
        # A check's interruption (its caller's Ctrl-C, or hang-up) waits until `_work` holds the spare, which it
        # then closes: interrupted before, the spare's folder and cgroup were left behind. Blocked only now: its
        # child, spawned above, must not inherit the mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        message, fds = receive(control, max_fds=4)
    except (Closed, OSError, ValueError, SystemExit):  # dropped by the daemon, or the daemon is gone
        if spare is not None:
            spare.close()
        os._exit(0)
    control.close()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    conn = socket.socket(fileno=fds[0])
    _work(conn, fds[1:], message, spare, hint_fd)


def _work(conn: socket.socket, stdio: list[int], message: dict[str, Any], spare: Any, hint_fd: int) -> None:
    """Run one command as the caller would have, in this fresh fork of the daemon, then leave."""
    global _CONTEXT
    _CONTEXT = _WorkerContext(hint_fd=hint_fd, spare=spare)  # first: the `finally` below closes a spare not taken
    code = 1
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by a spare worker until here
        from grader import cli

        for target, fd in zip((0, 1, 2), stdio):
            os.dup2(fd, target)
            os.close(fd)
        encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
        sys.stdin = open(0, encoding=encoding, closefd=False)
        sys.stdout = open(1, "w", encoding=encoding, buffering=1 if os.isatty(1) else -1, closefd=False)
        sys.stderr = io.TextIOWrapper(open(2, "wb", buffering=0, closefd=False), encoding=encoding,
                                      errors="backslashreplace", line_buffering=True)
        send(conn, {"accepted": os.getpid()})
        os.chdir(message["cwd"])
        os.umask(message["umask"])
        os.environ.clear()
        os.environ.update(message["env"])
        tempfile.tempdir = None  # the caller's TMPDIR, not the one `home()` may have cached in the daemon
        cpus = message.get("cpus")
        if isinstance(cpus, list) and cpus and all(isinstance(c, int) for c in cpus):
            try:  # the CPUs the caller may use (`taskset`): they decide the check's thread count (grading_threads)
                os.sched_setaffinity(0, cpus)
            except OSError:  # none of them is the daemon's to use: its own, as a caller in its cgroup would have
                pass
        sys.argv = ["grader", *message["argv"]]
        code = cli.main(message["argv"])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:  # before `cli.main` had it: as a direct run's Ctrl-C
        code = 130
    except BaseException:  # noqa: BLE001 - as a direct run would: the traceback, exit status 1
        traceback.print_exc()
    finally:
        # Not taken (a command that is not a check), or taken and dropped by an interruption before `prestart`
        # or the check owned it: its folder and cgroup go now. The check is over: nothing uses its child.
        take_spare()
        if _CONTEXT.taken is not None:
            _CONTEXT.taken.close()
    # Its caller may hang up as soon as it has the exit code, and the daemon then interrupts this worker: the
    # check is over by now, and what remains (closing its sandbox and judge at exit) must not be cut short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from grader import cli

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        send(conn, {"exit": code})
    except OSError:
        pass
    cli._leave(0)


def serve(idle_minutes: float) -> int:
    """`grader daemon start --foreground`: import, listen, serve until stopped or idle."""
    folder = private_home(create=True) or home()
    path = socket_path(folder)
    lock = open(folder / f"daemon-{identity()}.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"grader daemon: one is already running for this grader ({path})", flush=True)
        return 0
    started = time.perf_counter()
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    path.unlink(missing_ok=True)  # left by a daemon that died: the lock says none runs
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(64)
    os.chdir("/")
    print(f"grader daemon: pid {os.getpid()} serving on {path} (ready in {time.perf_counter() - started:.1f} s)",
          flush=True)
    daemon = _Daemon(path=path, idle_s=idle_minutes * 60, lock_fd=lock.fileno())
    try:
        daemon.serve(listener)
    finally:
        path.unlink(missing_ok=True)  # ours: the lock is held until this process ends
        listener.close()
    return 0
