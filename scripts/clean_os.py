"""A clean Debian root filesystem standing in for Gradescope's container, to run setup.sh and run_autograder in.

No Docker engine runs on the project's machines, so the Gradescope path is
proven in a root made by ``debootstrap`` (Debian bookworm, variant minbase:
no Python, no bubblewrap, nothing that setup.sh does not install itself):

* `base_root` debootstraps once and caches the result under
  ``~/.cache/grader-rootfs/<key>`` (the key covers the suite, variant,
  mirror and this module's recipe), like the venv cache;
* `CleanRoot` copies that root into a temporary folder, so every run starts
  from the same fresh system, lays out ``/autograder`` from the zip made by
  ``grader gradescope build`` and runs commands in it as root: a private
  mount and PID namespace (``unshare``), the copy bind-mounted on itself (so
  bubblewrap can pivot_root inside it), a fresh /proc, the host's /dev, and
  ``chroot``. Nothing is mounted on the host; the namespaces end with the
  command, taking every process left inside with them.
* Downloads are cached between runs in ``~/.cache/grader-rootfs/`` (pip's
  cache bind-mounted, apt's archives copied in and back); the only other host path seen
  inside is the folder of torch wheels named by ``GRADER_TORCH_WHEELS``
  (read-only), because PyTorch's CPU index cannot be reached from here.

`memory_cgroup` puts a run under a v1/v2 memory cgroup (limit and peak) for
``scripts/gradescope_memory.py``.

Everything here needs root, debootstrap and a reachable Debian mirror;
`CleanOSUnavailable` says which is missing, and callers fail on it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

SUITE = os.environ.get("GRADER_ROOTFS_SUITE", "bookworm")  # its python3 is 3.11, as the pins need
MIRROR = os.environ.get("GRADER_ROOTFS_MIRROR", "http://deb.debian.org/debian")
VARIANT = "minbase"
RECIPE_VERSION = "1"  # bump when the way the root is made changes: a new cache key
CACHE = Path(os.environ.get("GRADER_ROOTFS_CACHE")
             or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "grader-rootfs")
DEFAULT_WHEELS = Path("/opt/wheels")
# A PATH like a Debian root shell's; the host's (with its venvs) must not leak in.
HOST_CA = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class CleanOSUnavailable(RuntimeError):
    """The clean root cannot be made or entered here; the message says what is missing."""


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise CleanOSUnavailable(f"{tool} is not installed (apt-get install {'bubblewrap' if tool == 'bwrap' else tool})")
    return path


def preflight() -> None:
    """Raise CleanOSUnavailable unless this machine can build and enter a clean root."""
    if os.geteuid() != 0:
        raise CleanOSUnavailable("the clean-OS check needs root (debootstrap, chroot and mounts); run it as root")
    for tool in ("debootstrap", "bwrap"):
        _need(tool)


def cache_key() -> str:
    text = json.dumps([SUITE, VARIANT, MIRROR, RECIPE_VERSION])
    return f"{SUITE}-{VARIANT}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def base_root(log: Path | None = None) -> Path:
    """The cached debootstrapped root, made on first use (minutes; a few hundred MB of downloads)."""
    preflight()
    CACHE.mkdir(parents=True, exist_ok=True)
    root = CACHE / cache_key()
    if (root / ".complete").is_file():
        return root
    part = CACHE / f".{cache_key()}.part-{os.getpid()}"
    shutil.rmtree(part, ignore_errors=True)
    proc = subprocess.run([_need("debootstrap"), f"--variant={VARIANT}", SUITE, str(part), MIRROR],
                          capture_output=True, text=True)
    if log is not None:
        log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        shutil.rmtree(part, ignore_errors=True)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise CleanOSUnavailable(f"debootstrap of {SUITE} from {MIRROR} failed (exit {proc.returncode}); is the "
                                 f"mirror reachable?\n{tail}")
    (part / ".complete").write_text(f"{SUITE} {VARIANT} {MIRROR} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
    shutil.rmtree(root, ignore_errors=True)
    part.rename(root)  # last: an interrupted build leaves only a .part folder, redone next time
    return root


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def tail(self, n: int = 40) -> str:
        return "\n".join((self.stdout + "\n" + self.stderr).strip().splitlines()[-n:])


class CleanRoot:
    """A fresh copy of the cached root in a temporary folder, with Gradescope's /autograder laid out in it."""

    def __init__(self, workdir: Path | None = None, *, wheels: Path | None = None) -> None:
        base = base_root()
        self.tmp = Path(tempfile.mkdtemp(prefix="grader-clean-os-", dir=workdir))
        self.path = self.tmp / "root"
        # cp -a keeps owners, modes and device nodes; --reflink shares blocks where the filesystem can.
        subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(self.path)], check=True)
        (self.path / ".complete").unlink(missing_ok=True)
        # DNS inside the root: the host's resolver configuration (a copy, in the copy).
        resolv = Path("/etc/resolv.conf")
        if resolv.exists():
            (self.path / "etc" / "resolv.conf").unlink(missing_ok=True)
            shutil.copyfile(resolv, self.path / "etc" / "resolv.conf")
        # This machine's network re-signs TLS with its own authority: the root trusts what the host trusts
        # (a copy of the host's bundle, given to pip through the environment; Debian's own store is untouched).
        self.ca_env: dict[str, str] = {}
        if HOST_CA.is_file():
            inside = "/etc/ssl/host-ca-certificates.crt"
            (self.path / "etc" / "ssl").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(HOST_CA, self.path / inside.lstrip("/"))
            self.ca_env = {"PIP_CERT": inside, "SSL_CERT_FILE": inside, "REQUESTS_CA_BUNDLE": inside}
        self.wheels = wheels
        self.pip_cache = CACHE / "pip-cache"
        self.apt_cache = CACHE / "apt-archives"
        for d in (self.pip_cache, self.apt_cache):
            d.mkdir(parents=True, exist_ok=True)
        # apt's downloads from earlier runs, copied in (not bind-mounted: apt locks that folder, and two
        # roots may run setup.sh at once); new ones are copied back after setup.sh (`_keep_debs`).
        self._archives = self.path / "var" / "cache" / "apt" / "archives"
        for deb in self.apt_cache.glob("*.deb"):
            shutil.copy2(deb, self._archives / deb.name)

    @classmethod
    def attach(cls, path: Path, *, wheels: Path | None = None) -> "CleanRoot":
        """An existing root made by this class and kept (path = the root, not its temporary parent)."""
        self = cls.__new__(cls)
        self.tmp, self.path, self.wheels = path.parent, path, wheels
        self.pip_cache, self.apt_cache = CACHE / "pip-cache", CACHE / "apt-archives"
        self._archives = path / "var" / "cache" / "apt" / "archives"
        inside = Path("/etc/ssl/host-ca-certificates.crt")
        self.ca_env = ({"PIP_CERT": str(inside), "SSL_CERT_FILE": str(inside), "REQUESTS_CA_BUNDLE": str(inside)}
                       if (path / str(inside).lstrip("/")).is_file() else {})
        return self

    @property
    def autograder(self) -> Path:
        return self.path / "autograder"

    def install_zip(self, zip_path: Path) -> None:
        """What Gradescope does with the uploaded zip: unpack it into /autograder/source (modes kept)."""
        source = self.autograder / "source"
        source.mkdir(parents=True)
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(source)
            for info in zf.infolist():
                (source / info.filename).chmod((info.external_attr >> 16) & 0o777)
        (self.autograder / "results").mkdir()

    def install_run_autograder(self) -> None:
        """Gradescope copies source/run_autograder to /autograder/run_autograder after setup.sh."""
        shutil.copy2(self.autograder / "source" / "run_autograder", self.autograder / "run_autograder")
        (self.autograder / "run_autograder").chmod(0o755)

    def put_submission(self, folder: Path) -> None:
        """A new submission: /autograder/submission replaced, results emptied."""
        sub = self.autograder / "submission"
        shutil.rmtree(sub, ignore_errors=True)
        shutil.copytree(folder, sub, symlinks=True)
        results = self.autograder / "results"
        shutil.rmtree(results, ignore_errors=True)
        results.mkdir()

    def results(self) -> dict:
        return json.loads((self.autograder / "results" / "results.json").read_text())

    def _binds(self, hide_bwrap: bool) -> list[tuple[str, str, bool]]:
        """(host path, path inside the root, read-only) bind mounts."""
        binds = [(str(self.pip_cache), "/root/.cache/pip", False)]
        if self.wheels is not None:
            binds.append((str(self.wheels), str(self.wheels), True))
        if hide_bwrap:
            # Bubblewrap installed but unable to start, as in a container whose seccomp profile forbids
            # namespaces: its binary answers every call with a failure.
            binds.append(("/bin/false", "/usr/bin/bwrap", True))
        return binds

    def run(self, script: str, *, env: dict[str, str] | None = None, hide_bwrap: bool = False,
            cgroup_procs: list[Path] | None = None, timeout: float = 3600) -> Result:
        """Run `script` with bash as root inside the root; a clean environment plus `env`.

        cgroup_procs: cgroup.procs files the command joins before anything runs (memory measurement).
        """
        # bubblewrap, not chroot: inside a chroot the kernel refuses new user namespaces, so the grader's own
        # bubblewrap could never start there. This one pivots into the copy as real root (no user namespace),
        # keeps every capability (apt, useradd, chown, the sandbox's setuid) and a PID namespace of its own.
        argv = [_need("bwrap"), "--bind", str(self.path), "/", "--proc", "/proc", "--dev-bind", "/dev", "/dev",
                "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--cap-add", "ALL"]
        for host, inside, ro in self._binds(hide_bwrap):
            (self.path / inside.lstrip("/")).mkdir(parents=True, exist_ok=True) if Path(host).is_dir() else None
            argv += ["--ro-bind" if ro else "--bind", host, inside]
        inner_env = {"PATH": ROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb", **self.ca_env, **(env or {})}
        argv += ["--chdir", "/", "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in inner_env.items()),
                 "/bin/bash", "-c", UNMASK_PROC + script]
        if cgroup_procs:
            join = "".join(f"echo $$ > {_q(str(p))} && " for p in cgroup_procs)
            argv = ["/bin/sh", "-c", join + 'exec "$@"', "sh", *argv]
        started = time.monotonic()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={"PATH": ROOT_PATH})
        except subprocess.TimeoutExpired as exc:
            return Result(124, _text(exc.stdout), _text(exc.stderr) + f"\n(timed out after {timeout:g} s)",
                          time.monotonic() - started)
        return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)

    def setup(self, *, torch_wheels: Path | None = None) -> Result:
        """Run source/setup.sh as Gradescope does (root, cwd source/), then install run_autograder."""
        env = {"GRADER_TORCH_WHEELS": str(torch_wheels)} if torch_wheels else {}
        result = self.run("cd /autograder/source && bash ./setup.sh", env=env)
        for deb in self._archives.glob("*.deb"):
            if not (self.apt_cache / deb.name).exists():
                shutil.copy2(deb, self.apt_cache / f".{deb.name}.part")
                (self.apt_cache / f".{deb.name}.part").rename(self.apt_cache / deb.name)
        if result.returncode == 0:
            self.install_run_autograder()
        return result

    def run_autograder(self, *args: str, hide_bwrap: bool = False, cgroup_procs: list[Path] | None = None,
                       timeout: float = 2400) -> Result:
        cmd = "cd /autograder && /autograder/run_autograder " + " ".join(_q(a) for a in args)
        return self.run(cmd, hide_bwrap=hide_bwrap, cgroup_procs=cgroup_procs, timeout=timeout)

    def remove(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


# bubblewrap re-mounts /proc/irq, /proc/bus (and the like) read-only over its /proc; the kernel lets a new
# proc be mounted (the grader's bubblewrap, --proc) only where every proc mount is fully visible, so those
# sub-mounts go first. Real root here, so nothing is locked.
UNMASK_PROC = ("while read -r _ _ _ _ mnt _; do case $mnt in /proc/*) umount -l \"$mnt\";; esac; "
               "done < <(tac /proc/self/mountinfo); ")


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


@dataclass
class MemoryCgroup:
    """A memory cgroup below this process's own, with a hard limit and no swap; `peak_mb` after the run."""

    dir: Path
    v2: bool

    @property
    def procs(self) -> Path:
        return self.dir / "cgroup.procs"

    def peak_mb(self) -> float:
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        return int((self.dir / name).read_text()) / 2**20

    def oom_kills(self) -> int:
        text = (self.dir / ("memory.events" if self.v2 else "memory.oom_control")).read_text()
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def stat(self) -> dict[str, int]:
        out = {}
        for line in (self.dir / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            out[key] = int(value)
        return out

    def remove(self) -> None:
        for _ in range(50):
            try:
                self.dir.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)


def memory_cgroup(limit_mb: int | None) -> MemoryCgroup:
    """A fresh memory cgroup (limit_mb=None: no limit, only the peak), or CleanOSUnavailable."""
    base = Path("/sys/fs/cgroup")
    name = f"grader-memcheck-{uuid.uuid4().hex[:8]}"
    if (base / "cgroup.controllers").exists():
        own = base / _own_cgroup("")
        d = own / name
        d.mkdir()
        if limit_mb:
            (d / "memory.max").write_text(str(limit_mb << 20))
            if (d / "memory.swap.max").exists():
                (d / "memory.swap.max").write_text("0")
        return MemoryCgroup(d, True)
    own = base / "memory" / _own_cgroup("memory").lstrip("/")
    if not own.is_dir():
        raise CleanOSUnavailable("no memory cgroup to measure in (cgroup v1 without a memory hierarchy here)")
    d = own / name
    d.mkdir()
    if limit_mb:
        (d / "memory.limit_in_bytes").write_text(str(limit_mb << 20))
        if (d / "memory.memsw.limit_in_bytes").exists():  # no swap beyond the limit either
            (d / "memory.memsw.limit_in_bytes").write_text(str(limit_mb << 20))
    return MemoryCgroup(d, False)


def _own_cgroup(controller: str) -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (controller == "" and controllers == "") or controller in controllers.split(","):
            return path.lstrip("/")
    raise CleanOSUnavailable(f"this process is in no {controller or 'cgroup v2'} cgroup")
