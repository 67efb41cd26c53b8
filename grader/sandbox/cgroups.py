"""Optional Linux control groups for the child: a process-count and a memory limit that hold for root too.

RLIMIT_NPROC does not bind processes whose real uid is 0 (bubblewrap run by
root maps the child's uid inside a user namespace, but the kernel still
counts it as root), so a fork bomb is contained only by a pids cgroup. Where
the cgroup filesystem is not writable (most containers, non-root users) this
returns None and the caller falls back to rlimits, saying so.
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


@dataclass
class Cgroup:
    dirs: list[Path] = field(default_factory=list)  # one per hierarchy (v1) or a single v2 dir
    memory_file: Path | None = None
    oom_file: Path | None = None

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def add(self, pid: int) -> bool:
        """Move a process (all its threads) into this group; True once /proc/PID/cgroup shows it there.

        The parent does this as root, right after starting the child and before
        it is sent anything to run: a child that has dropped to an unprivileged
        uid cannot write cgroup.procs itself.
        """
        for f in self.procs_files:
            try:
                f.write_text(str(pid))
            except OSError:
                return False
        return self.contains(pid)

    def contains(self, pid: int) -> bool:
        """Whether /proc/PID/cgroup places the process in every directory of this group."""
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            return False
        member_of = set()
        for line in lines:
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                member_of.add((c, path))
        return all(_placement(d) in member_of for d in self.dirs)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for f in self.procs_files:
            try:
                found.update(int(x) for x in f.read_text().split())
            except OSError:
                pass
        return found

    def out_of_memory(self) -> bool:
        if self.oom_file is None:
            return False
        try:
            text = self.oom_file.read_text()
        except OSError:
            return False
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key in ("oom_kill", "oom") and value.strip() not in ("", "0"):
                return True
        return False

    def kill_all(self) -> None:
        # cgroup v2 (Linux 5.14+) kills the whole group in one step, forks included.
        for d in self.dirs:
            if (d / "cgroup.kill").exists():
                try:
                    (d / "cgroup.kill").write_text("1")
                except OSError:
                    pass
        # First forbid new processes: a fork bomb would otherwise refill the group as fast as it is killed.
        for d in self.dirs:
            if (d / "pids.max").exists():
                try:
                    (d / "pids.max").write_text("0")
                except OSError:
                    pass
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)

    def remove(self) -> None:
        self.kill_all()
        for d in self.dirs:
            for _ in range(20):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def create(*, max_processes: int, memory_mb: int | None) -> Cgroup | None:
    """A fresh cgroup with the limits, or None where cgroups cannot be managed here."""
    if os.geteuid() != 0 or not ROOT.is_dir():
        return None
    _sweep_stale()
    # The PID namespace in the name: only a grader that sees the owner's pids may judge it dead.
    name = f"grader-{os.getpid()}-{uuid.uuid4().hex[:8]}-ns{_pid_namespace()}"
    made: list[Path] = []
    try:
        if (ROOT / "cgroup.controllers").exists():  # cgroup v2, unified
            d = ROOT / name
            d.mkdir()
            made.append(d)
            (d / "pids.max").write_text(str(max_processes))
            group = Cgroup(dirs=[d], oom_file=d / "memory.events")
            if memory_mb:
                (d / "memory.max").write_text(str(memory_mb << 20))
                (d / "memory.swap.max").write_text("0") if (d / "memory.swap.max").exists() else None
            return group
        pids_root = ROOT / "pids"
        if not pids_root.is_dir():
            return None
        d = pids_root / name
        d.mkdir()
        made.append(d)
        (d / "pids.max").write_text(str(max_processes))
        group = Cgroup(dirs=[d])
        mem_root = _own_v1_memory_dir()
        if memory_mb and mem_root is not None:
            m = mem_root / name
            m.mkdir()
            made.append(m)
            (m / "memory.limit_in_bytes").write_text(str(memory_mb << 20))
            group.dirs.append(m)
            group.oom_file = m / "memory.oom_control"
        return group
    except OSError:
        for d in reversed(made):
            try:
                d.rmdir()
            except OSError:
                pass
        return None


def _placement(d: Path) -> tuple[str, str]:
    """(controller, path) as /proc/PID/cgroup names a member of directory `d` ("" for cgroup v2)."""
    rel = d.relative_to(ROOT)
    if rel.parts and rel.parts[0] in ("pids", "memory") and not (ROOT / "cgroup.controllers").exists():
        return rel.parts[0], "/" + "/".join(rel.parts[1:])
    return "", "/" + "/".join(rel.parts)


def _own_v1_memory_dir() -> Path | None:
    """The memory cgroup this process is in (v1), where children can be made."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                d = ROOT / "memory" / path.lstrip("/")
                return d if d.is_dir() else None
    except OSError:
        return None
    return None


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def _sweep_stale() -> None:
    """Kill what runs in cgroups left by earlier graders whose process is gone, and remove them.

    A grader that was killed (SIGKILL, out of memory) never closed its
    sandbox: what its student code left running is still in its group and
    dies here. A group can only be removed once its last process has been
    reaped, which on some machines happens after `remove` gave up; the next
    grader cleans up.
    """
    for hierarchy in (ROOT, ROOT / "pids", _own_v1_memory_dir()):
        if hierarchy is None or not hierarchy.is_dir():
            continue
        for d in hierarchy.glob("grader-*-*"):
            try:
                owner = int(d.name.split("-")[1])
            except (IndexError, ValueError):
                continue
            if owner == os.getpid() or Path(f"/proc/{owner}").exists():
                continue
            if d.name.endswith(f"-ns{_pid_namespace()}"):
                Cgroup(dirs=[d]).kill_all()
            try:
                d.rmdir()  # fails harmlessly while processes remain in it
            except OSError:
                pass
