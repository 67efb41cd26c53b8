"""How the child is isolated: bubblewrap, else an unprivileged uid, else a plain child process.

Levels, strongest first (DESIGN.md, trust boundary):

- ``bubblewrap``: the child sees a filesystem assembled from an allow-list
  (system libraries, the Python installation, the grader package, its own
  copy of the submission) and nothing else: no reference, rubrics, results
  path or hidden data; no network; its own PID namespace, so nothing it
  spawns outlives it; it dies with the grader.
- ``unprivileged-uid``: when bwrap cannot start (some containers) and the
  grader runs as root, the child runs as an unprivileged uid held by that
  sandbox alone, in its cgroup from before any student code runs; the
  protected paths are unreadable to that uid while any grader needs them, and
  every process of the uid is killed when the sandbox is done with it.
- ``process``: neither is possible (a student's own laptop): a separate
  process with resource limits only. Stated in every report.
"""
from __future__ import annotations

import atexit
import fcntl
import functools
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

LEVELS = ("bubblewrap", "unprivileged-uid", "process")
UNPRIVILEGED_USERS = ("grader-student", "nobody")
CHILD_ROOT = "/opt/grader-child"  # where the grader package appears inside bubblewrap
SUBMISSION_MOUNT = "/submission"


@dataclass(frozen=True)
class Plan:
    level: str
    argv_prefix: tuple[str, ...]  # prepended to the python command line
    child_root: str  # directory that contains the `grader` package, as the child sees it
    workdir: str  # the submission copy, as the child sees it
    user: int | None = None
    group: int | None = None


@functools.cache
def bwrap_works() -> bool:
    """Whether bubblewrap can build a sandbox here (it cannot in many unprivileged containers)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return False
    argv = [exe, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"]
    try:
        return subprocess.run(argv, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def python_dirs() -> list[Path]:
    """Directories the child needs to run this Python and its packages.

    A protected path inside one of them (a dataset's labels shipped in a
    package) is masked by `bwrap_argv`, not excluded with its whole directory.
    """
    wanted = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix),
              Path(sys.executable).resolve().parent.parent}
    # Only package directories: a sys.path entry such as a project root or a
    # tests folder is not the child's business.
    wanted |= {Path(p) for p in sys.path
               if p and Path(p).is_dir() and ("site-packages" in p or "dist-packages" in p or "lib/python" in p)}
    dirs: list[Path] = []
    for d in sorted({w.resolve() for w in wanted}):
        if any(_inside(d, other) for other in dirs):
            continue
        dirs.append(d)
    return dirs


def bwrap_argv(*, workdir: Path, grader_pkg: Path, protected: list[Path], gpu: bool) -> list[str]:
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--clearenv", "--uid", "65534", "--gid", "65534"]
    for top in ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        p = Path(top)
        if p.is_symlink():
            argv += ["--symlink", os.readlink(p), top]
        elif p.is_dir():
            argv += ["--ro-bind", top, top]
    # A private /tmp first: binds below may live under /tmp (a checkout there,
    # its .venv) and must be mounted on top of it, not hidden by it.
    argv += ["--tmpfs", "/tmp"]
    for d in python_dirs():
        if not str(d).startswith(("/usr/", "/etc/", "/bin/", "/lib")):
            argv += ["--ro-bind", str(d), str(d)]
    argv += ["--ro-bind", str(grader_pkg), f"{CHILD_ROOT}/grader",
             "--proc", "/proc", "--dev", "/dev",
             "--bind", str(workdir), SUBMISSION_MOUNT, "--chdir", SUBMISSION_MOUNT]
    if gpu:
        for dev in sorted(Path("/dev").glob("nvidia*")):
            argv += ["--dev-bind", str(dev), str(dev)]
    # Protected paths that sit inside something bound above (a dataset's test
    # labels under /usr/share, a package's bundled data) are covered last, so
    # that the child sees an empty directory or an empty file there.
    bound = [Path(a) for a in ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64")] + python_dirs()
    for p in protected:
        if p.exists() and any(_inside(p, b) for b in bound):
            argv += ["--tmpfs", str(p)] if p.is_dir() else ["--ro-bind", "/dev/null", str(p)]
    return argv


# --- the unprivileged-uid level --------------------------------------------------------------
#
# Three things make this level hold when several submissions are graded on one
# machine (a local pool, `grader grade -j N`) and when a submission leaves
# processes behind:
#
# - a student uid is held by one sandbox at a time (`UidSlot`, a flock the
#   kernel drops when its holder dies), so the processes of that uid are all
#   that sandbox's: they can be reaped as a whole, and no neighbour shares it;
# - protected paths are locked once and reference-counted across the
#   sandboxes of a process and across processes (`lock_protected`), never
#   toggled per sandbox, and a grader that dies leaves them locked;
# - every process of a dedicated uid is killed when its sandbox's child is
#   replaced or closed (`reap_user`), which catches setsid()/double-fork
#   daemons that no process group holds.


@dataclass(frozen=True)
class StudentUser:
    """A uid student code may run as. `dedicated`: nothing but the grader ever runs as it, so all of its
    processes may be killed; `nobody` is not (system daemons run as it)."""

    uid: int
    gid: int
    name: str
    dedicated: bool


def _parse_uids(text: str) -> list[int]:
    uids: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            first = last = -1
        if not 0 < first <= last or last - first > 1024:
            raise ValueError(f"GRADER_STUDENT_UIDS: bad range {part!r} (expected e.g. 61000-61003)")
        uids += range(first, last + 1)
    return uids


def student_users() -> list[StudentUser]:
    """The uids student code may run as, preferred first.

    GRADER_STUDENT_UIDS (e.g. ``61000-61003``) names uids the operator
    declares dedicated to the grader: no passwd entry is needed, and with
    several, that many uid-level sandboxes run at once. Otherwise the user
    grader-student (made by the Gradescope setup.sh), else `nobody`.
    """
    configured = os.environ.get("GRADER_STUDENT_UIDS", "").strip()
    if configured:
        users = []
        for uid in _parse_uids(configured):
            try:
                owner = pwd.getpwuid(uid).pw_name
            except KeyError:
                owner = None
            # All processes of these uids get killed: a uid that is someone's account must not be one.
            if owner is not None and not owner.startswith("grader"):
                raise ValueError(f"GRADER_STUDENT_UIDS: uid {uid} is the account {owner!r}; name uids that no one "
                                 "else uses (no passwd entry, or a grader-* user)")
            users.append(StudentUser(uid, uid, owner or f"uid {uid}", True))
        return users
    for name in UNPRIVILEGED_USERS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            continue
        return [StudentUser(entry.pw_uid, entry.pw_gid, name, name != "nobody")]
    return []


def unprivileged_user() -> tuple[int, int] | None:
    """(uid, gid) of the preferred student user, or None (what `grader gradescope run` reaps at the end)."""
    users = student_users()
    return (users[0].uid, users[0].gid) if users else None


def child_python() -> str:
    """The Python the child runs: the grader's own, or GRADER_CHILD_PYTHON (one the student uid can read,
    with the same packages, where the grader's own lives in a directory closed to it)."""
    return os.environ.get("GRADER_CHILD_PYTHON") or sys.executable


GRADER_PKG = Path(__file__).resolve().parent.parent


@functools.cache
def _uid_level_problem(uid: int, gid: int, python: str) -> str | None:
    # What the child needs before it can say hello: this Python, torch and numpy, the grader package.
    hint = (f"; is it, or the grader package {GRADER_PKG}, under a directory that uid cannot enter, such as "
            "/root? Set GRADER_CHILD_PYTHON to a Python it can read, with the same packages")
    probe = ("import importlib.util as u, sys; open(sys.argv[1]).close(); "
             "sys.exit(0 if u.find_spec('torch') and u.find_spec('numpy') else 3)")
    try:
        proc = subprocess.run([python, "-I", "-c", probe, str(GRADER_PKG / "child" / "main.py")],
                              capture_output=True, timeout=60, cwd="/",
                              user=uid, group=gid, extra_groups=[], env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{python} cannot be started as uid {uid} ({exc}){hint}"
    if proc.returncode == 3:
        return f"{python} runs as uid {uid} but cannot see torch and numpy (a package directory it cannot read?)"
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return f"{python} cannot run as uid {uid}: {why[0]}{hint}"
    return None


def uid_level_problem() -> str | None:
    """Why the unprivileged-uid level cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "it needs the grader to run as root"
    users = student_users()
    if not users:
        return "there is no unprivileged user (grader-student, nobody) and GRADER_STUDENT_UIDS is not set"
    return _uid_level_problem(users[0].uid, users[0].gid, child_python())


def choose_level(forced: str | None = None) -> str:
    """The strongest level that works here, or the forced one (GRADER_ISOLATION or --isolation).

    Root without bubblewrap always gets the unprivileged-uid level, even where
    its child cannot start (`uid_level_problem` says why, in every load
    error): falling back to a child running as root, which can read the
    reference, would trade a visible failure for wrong grades.
    """
    forced = forced or os.environ.get("GRADER_ISOLATION") or None
    if forced:
        if forced not in LEVELS:
            raise ValueError(f"unknown isolation level {forced!r}; choose one of {', '.join(LEVELS)}")
        return forced
    if bwrap_works():
        return "bubblewrap"
    if os.geteuid() == 0 and student_users():
        return "unprivileged-uid"
    return "process"


def state_dir() -> Path:
    """A root-only directory for the locks the grading processes of this machine share."""
    candidates = [Path(os.environ["GRADER_STATE_DIR"])] if os.environ.get("GRADER_STATE_DIR") else \
        [Path("/run/grader"), Path("/var/tmp/grader-state"), Path(tempfile.gettempdir()) / f"grader-state-{os.geteuid()}"]
    for d in candidates:
        try:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.lstat(d)
        except OSError:
            continue
        # Anyone else able to write here could forge the lock state.
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022:
            return d
    raise RuntimeError(f"no private directory for the sandbox's locks (tried {', '.join(map(str, candidates))})")


class UidSlot:
    """Exclusive use of one student uid for the lifetime of a sandbox, across threads and processes.

    An flock on a per-uid file: the kernel releases it when the holder's file
    is closed or its process dies, so a killed grader never leaves a uid taken.
    """

    _mine: dict[int, int] = {}  # uid -> the thread whose sandbox holds it (a thread waiting on itself never wakes)

    def __init__(self, user: StudentUser, fd: int, waited_s: float) -> None:
        self.user, self._fd, self.waited_s = user, fd, waited_s

    @classmethod
    def acquire(cls, users: list[StudentUser], *, poll_s: float = 0.2) -> "UidSlot":
        if not users:
            raise RuntimeError("no unprivileged user to run the child as")
        if all(cls._mine.get(u.uid) == threading.get_ident() for u in users):
            raise RuntimeError("every student uid is held by another open sandbox of this thread; give the grader "
                               "more (GRADER_STUDENT_UIDS) or close that sandbox first")
        d = state_dir()
        fds = {}
        started = time.monotonic()
        try:
            for u in users:
                fds[u.uid] = os.open(d / f"uid-{u.uid}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            while True:
                for u in users:
                    try:
                        fcntl.flock(fds[u.uid], fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue
                    fd = fds.pop(u.uid)
                    cls._mine[u.uid] = threading.get_ident()
                    return cls(u, fd, time.monotonic() - started)
                time.sleep(poll_s)  # every uid is in use by another sandbox: wait for one
        finally:
            for fd in fds.values():
                os.close(fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # drops the flock
            self._fd = -1
            UidSlot._mine.pop(self.user.uid, None)


def _live_pids_of(uid: int) -> list[int]:
    """The processes whose real uid is `uid`, zombies left out (they are dead already)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as f:
                status = f.read()
        except OSError:
            continue
        fields = dict(line.split(b":", 1) for line in status.splitlines() if b":" in line)
        uids = fields.get(b"Uid", b"").split()
        state = fields.get(b"State", b"").split()[:1]
        if uids and int(uids[0]) == uid and state != [b"Z"]:
            found.append(int(entry))
    return found


def reap_user(user: StudentUser) -> int:
    """Kill every process of a dedicated student uid; returns how many were running.

    Only for a dedicated uid held through a `UidSlot`: then every process of it
    belongs to the holder's sandbox. Never for `nobody` (system daemons).
    First kill(-1, SIGKILL) from a process running as that uid, which the
    kernel applies to all of its processes at once, so a fork loop cannot
    outrun it; then a scan of /proc, as root, for anything left.
    """
    if not user.dedicated:
        return 0
    before = _live_pids_of(user.uid)
    if not before:
        return 0
    try:
        subprocess.run(["/bin/sh", "-c", "kill -9 -1"], user=user.uid, group=user.gid, extra_groups=[],
                       env={"PATH": "/usr/bin:/bin"}, cwd="/", stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        pass
    for _ in range(50):
        left = _live_pids_of(user.uid)
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    return len(before)


# Protected paths: locked once, reference-counted --------------------------------------------

_held: dict[str, int] = {}  # path -> sandboxes of this process that hold it
_held_pid = os.getpid()
_held_mutex = threading.Lock()


def _holder_id(pid: int) -> str | None:
    """pid:start-time, so that a reused pid is not taken for the grader that died."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f"{pid}:{int(f.read().rsplit(b')', 1)[1].split()[19])}"
    except (OSError, IndexError, ValueError):
        return None


def _still_holds(holder: object) -> bool:
    try:
        return isinstance(holder, str) and _holder_id(int(holder.split(":")[0])) == holder
    except ValueError:
        return False


def _restricted(mode: int, gid: int, student_gids: set[int]) -> int:
    mode &= ~0o007
    if gid in student_gids:
        mode &= ~0o070
    return mode


def _update_shared(acquire: list[str], release: list[str], student_gids: set[int]) -> None:
    """Change this process's holds in the machine-wide lock state, under an exclusive flock.

    The state is written before any chmod: a grader killed in between leaves a
    path locked with an entry that says so (the next grader restores it once
    no live holder is left), never an unlocked path marked locked.
    """
    d = state_dir()
    fd = os.open(d / "protected.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        state_file = d / "protected.json"
        try:
            state = json.loads(state_file.read_text())
            entries: dict[str, dict] = state["paths"] if isinstance(state, dict) and isinstance(state.get("paths"), dict) else {}
        except (OSError, ValueError):
            entries = {}
        me = _holder_id(os.getpid())
        for entry in entries.values():
            entry["holders"] = [h for h in entry.get("holders", []) if _still_holds(h)]
        to_lock: list[tuple[str, int]] = []
        for path in acquire:
            try:
                st = os.stat(path)
            except OSError:
                continue  # nothing there (yet): nothing to read
            entry = entries.get(path)
            if entry is None:
                entry = entries[path] = {"mode": stat.S_IMODE(st.st_mode), "holders": []}
            entry["set"] = _restricted(stat.S_IMODE(st.st_mode), st.st_gid, student_gids)
            if me not in entry["holders"]:
                entry["holders"].append(me)
            to_lock.append((path, entry["set"]))
        for path in release:
            if path in entries and me in entries[path]["holders"]:
                entries[path]["holders"].remove(me)
        to_restore = [(p, e) for p, e in entries.items() if not e["holders"]]
        for p, _ in to_restore:
            del entries[p]
        tmp = d / f"protected.json.{os.getpid()}"
        tmp.write_text(json.dumps({"paths": entries}, indent=1))
        os.chmod(tmp, 0o600)
        os.replace(tmp, state_file)
        for path, mode in to_lock:
            os.chmod(path, mode)
        for path, entry in to_restore:
            try:
                # Only undo our own change: a mode someone set since is theirs.
                if stat.S_IMODE(os.stat(path).st_mode) == entry.get("set"):
                    os.chmod(path, entry["mode"])
            except OSError:
                pass
    finally:
        os.close(fd)


def lock_protected(paths: list[Path], users: list[StudentUser]) -> list[str]:
    """Make `paths` unreadable to the student uids while any sandbox of any grading process needs them.

    Returns the handle to pass to `unlock_protected`. Called once per sandbox;
    only the first hold in this process touches the files or the shared state.
    """
    global _held_pid
    keys = sorted({str(p) for p in paths})
    with _held_mutex:
        if _held_pid != os.getpid():  # a forked worker inherits its parent's counts, not its holds
            _held.clear()
            _held_pid = os.getpid()
        new = [k for k in keys if not _held.get(k)]
        if new:
            _update_shared(new, [], {u.gid for u in users})
        for k in keys:
            _held[k] = _held.get(k, 0) + 1
    return keys


def unlock_protected(keys: list[str]) -> None:
    """Drop one sandbox's hold; the last hold on the machine restores the original modes."""
    with _held_mutex:
        if _held_pid != os.getpid():
            return
        done = []
        for k in keys:
            if _held.get(k):
                _held[k] -= 1
                if not _held[k]:
                    del _held[k]
                    done.append(k)
        if done:
            _update_shared([], done, set())


def _unlock_all_at_exit() -> None:
    with _held_mutex:
        keys = list(_held) if _held_pid == os.getpid() else []
        _held.clear()
    if keys:
        try:
            _update_shared([], keys, set())
        except (OSError, RuntimeError):
            pass  # left locked: the next grader restores them


atexit.register(_unlock_all_at_exit)
