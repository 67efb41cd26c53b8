"""A submission's files: which ones are taken in for grading, and which code and answers file is used.

Intake runs in the trusted parent before anything reaches the sandbox
(`take_in`). It walks the folder without following links (``os.fwalk`` with
directory descriptors, each file opened with ``O_NOFOLLOW`` and checked
again after opening, so a file swapped for a link mid-walk is refused too)
and copies every acceptable regular file into a clean folder; that copy is
what the sandbox gets. Everything else is refused with a sentence, one per
file, and costs only the checks that needed it: symbolic links (a
symlinked ``hw4.py`` would point the grader at a file outside the
submission), hard links, devices, FIFOs and sockets, files over the
per-file or the total size cap, files past the count cap, folders nested
too deep, and names a student's system should not produce (control
characters, bytes that are not UTF-8, a leading '-', very long names).
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

# Shown in run.load_messages at most; the rest are counted.
MAX_LISTED_REFUSALS = 10
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class IntakeLimits:
    """What one submission may hand in; rubric `limits` can change each (see `intake_limits`)."""

    max_file_bytes: int = 64 << 20  # one file (rubric limits.max_file_mb, also the child's file-size limit)
    max_total_bytes: int = 256 << 20  # all files together (limits.max_submission_mb)
    max_files: int = 1000  # files taken in (limits.max_submission_files)
    max_depth: int = 8  # folders below the submission folder
    max_name_chars: int = 128  # one file or folder name


def intake_limits(limits: Mapping[str, Any]) -> IntakeLimits:
    """IntakeLimits from a rubric's `limits` mapping, with the defaults above for what it leaves out."""
    d = IntakeLimits()
    mb = 1 << 20
    return IntakeLimits(max_file_bytes=int(limits.get("max_file_mb", d.max_file_bytes // mb)) * mb,
                        max_total_bytes=int(limits.get("max_submission_mb", d.max_total_bytes // mb)) * mb,
                        max_files=int(limits.get("max_submission_files", d.max_files)))


@dataclass(frozen=True)
class Intake:
    """What `take_in` copied (relative POSIX paths under `folder`) and what it refused, with why."""

    folder: Path
    accepted: tuple[str, ...]
    refused: dict[str, str] = field(default_factory=dict)  # shown path -> sentence

    def messages(self) -> list[str]:
        """One line per refused file (the first few), then how many more."""
        lines = [f"Not graded: {sentence}" for sentence in list(self.refused.values())[:MAX_LISTED_REFUSALS]]
        if len(self.refused) > MAX_LISTED_REFUSALS:
            lines.append(f"Not graded: {len(self.refused) - MAX_LISTED_REFUSALS} more file(s) refused for the same reasons.")
        return lines


def show_name(name: str) -> str:
    """A file name as it can be printed: control characters and undecodable bytes escaped, length cut."""
    shown = name.encode("utf-8", "backslashreplace").decode("utf-8", "replace")
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in shown)
    return shown if len(shown) <= 80 else shown[:60] + "[...]" + shown[-15:]


def _name_problem(name: str, limits: IntakeLimits) -> str | None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.fwalk hands undecodable bytes over as lone surrogates
        return "its name is not valid UTF-8"
    if any(not c.isprintable() for c in name):
        return "its name contains control characters"
    if name.startswith("-"):
        return "its name starts with '-' (tools would read it as an option)"
    if len(name) > limits.max_name_chars:
        return f"its name is {len(name)} characters long (at most {limits.max_name_chars})"
    return None


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return "not a regular file"


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n < (10 << 20) else f"{n >> 20} MB"


def take_in(folder: Path, dest: Path, limits: IntakeLimits = IntakeLimits()) -> Intake:
    """Copy the acceptable files of `folder` into `dest` (created); refuse the others with a sentence each."""
    dest.mkdir(parents=True)
    accepted: list[str] = []
    refused: dict[str, str] = {}
    total = 0
    root = folder.resolve()
    if not root.is_dir():
        return Intake(folder=dest, accepted=())

    def refuse(rel: str, why: str) -> None:
        refused[show_name(rel)] = f"{show_name(rel)} {why}."

    seen_entries = 0
    for top, dirs, files, dir_fd in os.fwalk(root, follow_symlinks=False):
        # Refused entries cost a stat each: a folder of a million FIFOs must not stall grading.
        seen_entries += len(dirs) + len(files)
        if seen_entries > 4 * limits.max_files:
            refused["..."] = (f"The submission has more than {4 * limits.max_files:,} files and folders; "
                              f"those in {show_name(os.path.relpath(top, root))} and after it were not read.")
            break
        rel_top = os.path.relpath(top, root)
        rel_top = "" if rel_top == "." else rel_top
        depth = 0 if not rel_top else rel_top.count(os.sep) + 1
        # Entries in a stable order; fwalk lists a symlink to a folder under `dirs`: it is refused here.
        keep = []
        for name in sorted(dirs):
            rel = os.path.join(rel_top, name)
            try:
                st = os.lstat(name, dir_fd=dir_fd)
            except OSError:
                continue
            problem = _name_problem(name, limits)
            if not stat.S_ISDIR(st.st_mode):
                refuse(rel, f"is {_kind(st.st_mode)}; upload the file itself")
            elif problem:
                refuse(rel + "/", f"was not read: {problem}")
            elif depth + 1 > limits.max_depth:
                refuse(rel + "/", f"was not read: folders may be nested at most {limits.max_depth} deep")
            else:
                keep.append(name)
        dirs[:] = keep
        for name in sorted(files):
            rel = os.path.join(rel_top, name)
            problem = _name_problem(name, limits)
            if problem:
                refuse(rel, f"was not read: {problem}; rename it")
                continue
            if len(accepted) >= limits.max_files:
                refuse(rel, f"was not read: a submission may have at most {limits.max_files} files")
                continue
            seen = _lstat(name, dir_fd)
            if seen is None:
                continue  # gone meanwhile
            if not stat.S_ISREG(seen.st_mode):  # never opened: opening a FIFO or a device can block or act
                refuse(rel, f"is {_kind(seen.st_mode)}; upload "
                            + ("the file itself" if stat.S_ISLNK(seen.st_mode) else "only regular files"))
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
            except OSError as exc:  # ELOOP: swapped for a symbolic link since the lstat
                refuse(rel, f"could not be read ({exc.strerror})")
                continue
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino):
                    refuse(rel, "changed while it was read; upload it again")
                elif st.st_nlink > 1:
                    refuse(rel, "is a hard link to another file; upload a copy of the file itself")
                elif st.st_size > limits.max_file_bytes:
                    refuse(rel, f"is {_mb(st.st_size)}, over the {_mb(limits.max_file_bytes)} limit for one file")
                elif total + st.st_size > limits.max_total_bytes:
                    refuse(rel, f"was not read: the submission's files pass the {_mb(limits.max_total_bytes)} limit "
                                "for all files together")
                else:
                    target = dest / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    copied = _copy(fd, target, limits.max_file_bytes)
                    if copied is None:
                        target.unlink()
                        refuse(rel, f"grew past the {_mb(limits.max_file_bytes)} limit for one file while it was read")
                    else:
                        total += copied
                        accepted.append(Path(rel).as_posix())
            finally:
                os.close(fd)
    return Intake(folder=dest, accepted=tuple(accepted), refused=refused)


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except OSError:
        return None


def _copy(fd: int, target: Path, cap: int) -> int | None:
    """Copy an open file to `target`, at most `cap` bytes; None if it holds more (it grew meanwhile)."""
    done = 0
    with open(target, "wb") as out:
        while chunk := os.read(fd, _COPY_CHUNK):
            done += len(chunk)
            if done > cap:
                return None
            out.write(chunk)
    return done


@dataclass(frozen=True)
class SubmissionFiles:
    code: Path | None
    answers: Path | None
    present: tuple[str, ...]  # every file name in the folder (top level), for messages
    code_refused: str | None = None  # why the code file that was there was not taken in
    answers_refused: str | None = None


def find_files(folder: Path, code_names: list[str], answer_names: list[str],
               refused: Mapping[str, str] | None = None) -> SubmissionFiles:
    """Pick the first accepted code file and answers file, by the rubric's order of preference.

    Students upload from many systems: a case-insensitive match is accepted
    (``HW4.py``), and a single file one folder down (``hw4/hw4.py``, from a
    zipped folder) is found too. Only regular files count: a link is never
    followed (on a folder `take_in` has filled, there are none). `refused`
    (from `take_in`) says why a file with a wanted name is not there.
    """
    entries = _regular_files(folder)
    present = tuple(sorted(show_name(p.name) for p in folder.iterdir())) if folder.is_dir() else ()

    def pick(names: list[str]) -> Path | None:
        for name in names:
            exact = folder / name
            if exact in entries:
                return exact
            for p in entries:
                if p.parent == folder and p.name.lower() == name.lower():
                    return p
            nested = [p for p in entries if p.parent.parent == folder and p.name == name]
            if len(nested) == 1:
                return nested[0]
        return None

    def why_not(names: list[str]) -> str | None:
        wanted = {n.lower() for n in names}
        for shown, sentence in (refused or {}).items():
            parts = shown.split("/")
            if len(parts) <= 2 and parts[-1].lower() in wanted:
                return sentence
        return None

    code, answers = pick(code_names), pick(answer_names)
    return SubmissionFiles(code=code, answers=answers, present=present,
                           code_refused=why_not(code_names) if code is None else None,
                           answers_refused=why_not(answer_names) if answers is None else None)


def _regular_files(folder: Path) -> list[Path]:
    """Regular files (never links) at the top of `folder` and one folder down, in name order."""
    out: list[Path] = []
    if not folder.is_dir() or folder.is_symlink():
        return out
    for p in sorted(folder.iterdir()):
        try:
            mode = p.lstat().st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode):
            out.append(p)
        elif stat.S_ISDIR(mode):
            try:
                out += [q for q in sorted(p.iterdir()) if stat.S_ISREG(q.lstat().st_mode)]
            except OSError:
                continue
    return out
