"""`grader gradescope build`: the autograder zip for one assignment.

The rubric is validated (with its reference) first, so a broken rubric never
reaches Gradescope; then the files of `layout.entries` are written into the
zip with fixed timestamps, so the same sources give the same bytes.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from grader.course import Course
from grader.errors import RubricErrors
from grader.gradescope import budget, layout
from grader.rubric.load import load_rubric, support_file_problems

FIXED_DATE = (2020, 1, 1, 0, 0, 0)  # zip timestamps: reproducible archives


@dataclass
class BuildReport:
    output: Path
    members: list[str] = field(default_factory=list)
    bytes: int = 0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def build_zip(assignment: str, output: Path, *, repo_root: Path = layout.REPO_ROOT,
              timeout_s: float = budget.GRADESCOPE_TIMEOUT_S,
              memory_mb: int = budget.GRADESCOPE_MEMORY_MB, course: Course | None = None) -> BuildReport:
    """Write the autograder zip for `assignment` of `course` (default: the repository's own);
    raises RubricErrors for an unusable rubric."""
    course = course or Course(repo_root)
    rubric_path = course.rubrics_dir / f"{assignment}.yaml"
    if not rubric_path.is_file():
        raise FileNotFoundError(f"no rubric {rubric_path} (known assignments: {', '.join(course.assignments()) or 'none'})")
    rubric = load_rubric(rubric_path, course=course)
    problems = support_file_problems(rubric)  # a broken test file would cost every student's grading a review
    if problems:
        raise RubricErrors(problems)
    assessment = budget.assess(rubric, timeout_s=timeout_s, memory_mb=memory_mb)
    report = BuildReport(output=output, warnings=assessment.warnings, notes=assessment.notes)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        # Files beside the rubric that its checks read at grading time (a unittest check's test file) go beside it.
        support = layout.Entry("rubric support files", "rubrics")
        entries = [(e, layout.expand(e, repo_root, course.root))
                   for e in layout.entries(rubric.assignment, rubric.reference_name, course_checks=course.checks_dir.is_dir())]
        entries.append((support, [(rubric_path.parent / rel, f"rubrics/{rel}") for rel in _support_files(rubric)]))
        for entry, files in entries:
            for path, dest in files:
                info = zipfile.ZipInfo(dest, date_time=FIXED_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (0o100755 if entry.executable else 0o100644) << 16
                zf.writestr(info, path.read_bytes())
                report.members.append(dest)
    tmp.replace(output)
    report.bytes = output.stat().st_size
    return report


def _support_files(rubric) -> list[str]:
    """Paths (relative to the rubric's folder) that a check kind declares it needs besides the rubric."""
    from grader.checks import REGISTRY

    files: list[str] = []
    for spec in rubric.checks:
        declared = getattr(REGISTRY[spec.kind], "support_files", None)
        files += [f for f in (declared(spec) if declared else []) if f not in files]
    return files
