"""How the child is isolated: bubblewrap, else an unprivileged uid, else a plain child process.

Levels, strongest first (DESIGN.md, trust boundary):

- ``bubblewrap``: the child sees a filesystem assembled from an allow-list
  (system libraries, the Python installation, the grader package, its own
  copy of the submission) and nothing else: no reference, rubrics, results
  path or hidden data; no network; its own PID namespace, so nothing it
  spawns outlives it; it dies with the grader.
- ``unprivileged-uid``: when bwrap cannot start (some containers) and the
  grader runs as root, the child runs as an unprivileged user and the
  protected paths are made unreadable to it.
- ``process``: neither is possible (a student's own laptop): a separate
  process with resource limits only. Stated in every report.
"""
from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import sys
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


def unprivileged_user() -> tuple[int, int] | None:
    for name in UNPRIVILEGED_USERS:
        try:
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
        except KeyError:
            continue
    return None


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


def choose_level(forced: str | None = None) -> str:
    """The strongest level that works here, or the forced one (GRADER_ISOLATION or --isolation)."""
    forced = forced or os.environ.get("GRADER_ISOLATION") or None
    if forced:
        if forced not in LEVELS:
            raise ValueError(f"unknown isolation level {forced!r}; choose one of {', '.join(LEVELS)}")
        return forced
    if bwrap_works():
        return "bubblewrap"
    if os.geteuid() == 0 and unprivileged_user() is not None:
        return "unprivileged-uid"
    return "process"


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


def lock_paths(paths: list[Path]) -> list[tuple[Path, int]]:
    """Remove 'other' permissions from protected paths (for the unprivileged-uid level).

    Returns the original modes so they can be restored afterwards.
    """
    changed = []
    for p in paths:
        try:
            mode = p.stat().st_mode & 0o7777
        except OSError:
            continue
        if mode & 0o007:
            os.chmod(p, mode & ~0o007)
            changed.append((p, mode))
    return changed


def restore_paths(changed: list[tuple[Path, int]]) -> None:
    for p, mode in changed:
        try:
            os.chmod(p, mode)
        except OSError:
            pass
