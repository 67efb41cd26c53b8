"""What goes into a Gradescope autograder, and where: the zip's table.

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh``
from there and copies ``run_autograder`` to ``/autograder/run_autograder``.
So the zip's root *is* ``source/``: the grader package, the assignment's
rubric and reference module, and the pinned requirements, nothing else of the
repository (no tests, no example submissions, no other assignments).

The repository's Dockerfile unpacks the zip itself into the image's
``/autograder/source``, so the two cannot differ (tests/test_gradescope_build.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FILES = Path(__file__).resolve().parent / "files"
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
# Never shipped from inside the grader package.
EXCLUDED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True)
class Entry:
    """One repository file or folder and its path inside the autograder's source/."""

    source: str  # relative to the repository root, or to the course folder when `course`
    dest: str  # relative to source/ (the zip's root)
    executable: bool = False
    course: bool = False  # taken from the course folder (grader.course), not from the grader's repository
    optional: bool = False  # left out when the course has no such file

    def __repr__(self) -> str:
        return f"Entry({self.source} -> {self.dest})"


def entries(assignment: str, reference: str, *, course_checks: bool = False) -> list[Entry]:
    """The autograder's files for one assignment (reference = the rubric's `reference:` module name).

    source/ is itself a course folder (rubrics/, reference/, and checks/ when the course has extra check
    kinds), so `grader gradescope run` finds them as any command finds a course's."""
    out = [
        Entry("grader/gradescope/files/setup.sh", "setup.sh", executable=True),
        Entry("grader/gradescope/files/run_autograder", "run_autograder", executable=True),
        Entry("grader", "grader"),
        Entry(f"rubrics/{assignment}.yaml", f"rubrics/{assignment}.yaml", course=True),
        Entry("reference/__init__.py", "reference/__init__.py", course=True, optional=True),
        Entry(f"reference/{reference}.py", f"reference/{reference}.py", course=True),
        Entry("requirements/common.txt", "requirements/common.txt"),
        Entry("grader/gradescope/files/torch-cpu.txt", "requirements/torch-cpu.txt"),
    ]
    if course_checks:
        out.append(Entry("checks", "checks", course=True))
    return out


def shipped(path: Path) -> bool:
    """Whether a file found under a shipped folder goes into the autograder."""
    return not (EXCLUDED_PARTS & set(path.parts)) and path.suffix not in EXCLUDED_SUFFIXES


def expand(entry: Entry, repo_root: Path = REPO_ROOT, course_root: Path | None = None) -> list[tuple[Path, str]]:
    """(file on disk, path in the zip) for every file an entry stands for."""
    src = ((course_root or repo_root) if entry.course else repo_root) / entry.source
    if src.is_file():
        return [(src, entry.dest)]
    if not src.is_dir():
        if entry.optional:
            return []
        raise FileNotFoundError(src)
    return [(f, f"{entry.dest}/{f.relative_to(src).as_posix()}")
            for f in sorted(src.rglob("*")) if f.is_file() and shipped(f.relative_to(src))]
