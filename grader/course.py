"""A course is a folder: where every command finds rubrics, reference modules, datasets and extra check kinds.

Layout (only ``rubrics/`` and ``reference/`` are required)::

    my-course/
      rubrics/hw1.yaml           one rubric per assignment (its ``reference:`` names a module below)
      reference/hw1.py           the reference solutions: never visible to the sandboxed child
      checks/my_kind.py          optional: extra check kinds (``@register`` classes), trusted code
      data/                      optional: datasets (torchvision layout or IDX files)
      docs/assignments/hw1.md    the handouts ``grader handout`` writes

``--course DIR`` selects a course on every command; without it the course is
``$GRADER_COURSE``, else the four assignments shipped in this repository.
A rubric given by its path belongs to the course whose ``rubrics/`` folder
holds it. Check kinds can also come from installed packages, through the
entry point group ``grader.check_kinds`` (each entry point names a module
whose import registers kinds, or a `Check` class).

This is the one place that turns a course folder into paths: nothing else
derives a reference's or a rubric's location.
"""
from __future__ import annotations

import difflib
import hashlib
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from grader.errors import RubricError, UsageError
from grader.trusted_import import import_file

REPO_ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINT_GROUP = "grader.check_kinds"


@dataclass(frozen=True)
class Course:
    """A course folder, resolved; build it with `Course.load`, `Course.default` or `Course.for_rubric`."""

    root: Path

    # --- finding a course ----------------------------------------------------------------------

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> "Course":
        """The course in ``folder``; raises UsageError saying what is missing.

        Finding a course imports nothing: its extra check kinds (and torch, which every check kind
        imports) are registered by `register_check_kinds`, which `load_rubric` calls. `grader check`
        finds the rubric before it spawns the sandbox child, and must not import torch until then."""
        root = Path(folder).expanduser().resolve()
        if not root.is_dir():
            raise UsageError(f"course folder {folder} does not exist (a course folder holds rubrics/ and reference/)")
        if not (root / "rubrics").is_dir():
            raise UsageError(f"{folder} is not a course folder: it has no rubrics/ folder "
                             "(expected rubrics/NAME.yaml and reference/MODULE.py)")
        return cls(root)

    @classmethod
    def default(cls) -> "Course":
        """$GRADER_COURSE, else the course shipped in this repository (hw4, a2, tricks, ds5220)."""
        return cls.load(os.environ.get("GRADER_COURSE") or REPO_ROOT)

    @classmethod
    def from_option(cls, folder: str | None) -> "Course":
        """The course a ``--course`` option names, or the default one."""
        return cls.load(folder) if folder else cls.default()

    @classmethod
    def for_rubric(cls, rubric_path: str | os.PathLike[str]) -> "Course":
        """The course a rubric file belongs to: the folder holding the ``rubrics/`` folder it sits in."""
        return cls(Path(rubric_path).resolve().parent.parent)

    # --- what it holds -------------------------------------------------------------------------

    @property
    def rubrics_dir(self) -> Path:
        return self.root / "rubrics"

    @property
    def reference_dir(self) -> Path:
        return self.root / "reference"

    @property
    def checks_dir(self) -> Path:
        return self.root / "checks"

    @property
    def data_dir(self) -> Path | None:
        """The course's own datasets, when it has any."""
        d = self.root / "data"
        return d if d.is_dir() else None

    @property
    def handouts_dir(self) -> Path:
        return self.root / "docs" / "assignments"

    def assignments(self) -> list[str]:
        return sorted(p.stem for p in self.rubrics_dir.glob("*.y*ml")) if self.rubrics_dir.is_dir() else []

    def rubric_path(self, assignment: str) -> Path:
        """rubrics/ASSIGNMENT.yaml (or .yml); raises RubricError with the known names and a suggestion."""
        for ext in (".yaml", ".yml"):
            path = self.rubrics_dir / f"{assignment}{ext}"
            if path.is_file():
                return path
        known = self.assignments()
        close = difflib.get_close_matches(assignment, known, n=1)
        raise RubricError(file=assignment, path="", problem=f"no rubric for assignment {assignment!r} in "
                          f"{self.rubrics_dir} (known: {', '.join(known) or 'none'})",
                          suggestion=close[0] if close else None)

    def reference_module(self, name: str) -> Path:
        """The file of the reference module a rubric's ``reference:`` names."""
        return self.reference_dir / f"{name}.py"

    def handout_path(self, assignment: str) -> Path:
        return self.handouts_dir / f"{assignment}.md"

    def protected_paths(self) -> list[Path]:
        """What of the course the sandboxed child must never read: reference, rubrics, check code, data."""
        paths = [self.reference_dir, self.rubrics_dir]
        if self.checks_dir.is_dir():
            paths.append(self.checks_dir)
        if self.data_dir is not None:
            paths.append(self.data_dir)
        return paths

    # --- extra check kinds ---------------------------------------------------------------------

    def register_check_kinds(self) -> list[str]:
        """Import the course's checks/*.py (each registers its kinds) and the installed entry points, once."""
        from grader.checks import REGISTRY

        before = set(REGISTRY)
        load_entry_point_kinds()
        if self.checks_dir.is_dir() and self.root != REPO_ROOT:
            for path in sorted(self.checks_dir.glob("*.py")):
                if path.name.startswith("_"):
                    continue
                # Named by the real file: a course reached twice (a link, a second command) imports it once.
                tag = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
                _import_file(f"grader_course_{tag}_{path.stem}", path.resolve())
        return sorted(set(REGISTRY) - before)


def _import_file(module_name: str, path: Path) -> None:
    """Import one trusted course file under a name of its own (a second call does nothing)."""
    try:
        import_file(module_name, path)
    except Exception as exc:
        raise RubricError(str(path), "", f"the course's check kinds failed to import: {type(exc).__name__}: {exc}") from exc


_ENTRY_POINTS_LOADED = False


def load_entry_point_kinds() -> None:
    """Import each ``grader.check_kinds`` entry point once: a module registers its kinds; a class is registered."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from grader.checks import REGISTRY, register
    from grader.checks.base import Check

    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # an installed package's fault: say which one
            raise RubricError(f"entry point {ep.name} = {ep.value}", "", f"check kinds ({ENTRY_POINT_GROUP}) failed to "
                              f"import: {type(exc).__name__}: {exc}") from exc
        if isinstance(obj, type) and issubclass(obj, Check) and REGISTRY.get(obj.kind) is not obj:
            register(obj)
