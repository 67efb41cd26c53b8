"""Load a rubric: YAML -> JSON Schema validation -> meaning checks -> `Rubric`.

Every problem is reported with the file, the path inside it and what is
wrong, all at once, with "did you mean ...?" where a name is close to a
known one. Mistakes here are the course's, and are worded for instructors.
"""
from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import yaml

from grader import trusted_import
from grader.course import Course
from grader.errors import RubricError, RubricErrors
from grader.rubric.model import CheckSpec, KnownMistake, Question, Rubric, RubricItem
from grader.rubric.references import ReferenceNameError, resolve_reference
from grader.rubric.schema import message, rubric_schema, unknown_option_errors

SCHEMA_VERSION = 1


def rubric_dirs(course: Course | None = None) -> list[Path]:
    """Where `--assignment NAME` looks for NAME.yaml: the course's rubrics/; without a course,
    $GRADER_RUBRICS, then the default course's (grader.course)."""
    if course is not None:
        return [course.rubrics_dir]
    dirs = []
    if os.environ.get("GRADER_RUBRICS"):
        dirs.append(Path(os.environ["GRADER_RUBRICS"]))
    dirs.append(Course.default().rubrics_dir)
    return dirs


def find_rubric(assignment: str, course: Course | None = None) -> Path:
    if course is not None:
        return course.rubric_path(assignment)
    for d in rubric_dirs():
        for ext in (".yaml", ".yml"):
            if (d / f"{assignment}{ext}").is_file():
                return d / f"{assignment}{ext}"
    known = sorted({p.stem for d in rubric_dirs() if d.is_dir() for p in d.glob("*.y*ml")})
    close = difflib.get_close_matches(assignment, known, n=1)
    raise RubricError(file=assignment, path="", problem=f"no rubric for assignment {assignment!r} in "
                      f"{', '.join(str(d) for d in rubric_dirs())} (known: {', '.join(known) or 'none'})",
                      suggestion=close[0] if close else None)


def support_file_problems(rubric: Rubric) -> list[RubricError]:
    """Problems in the files a rubric's checks read beside it at grading time (a unittest check's test file:
    weights that do not add up to the check's points, an import that fails...), found by the kinds'
    `validate_files`. Not part of `load_rubric`: at grading such a check alone is a grader error (points
    kept); `grader rubric validate` and `grader gradescope build` report them."""
    from grader.checks import REGISTRY

    folder = rubric.path.resolve().parent
    problems = []
    for spec in rubric.checks:
        validate = getattr(REGISTRY.get(spec.kind), "validate_files", None)
        if validate is not None:
            problems += [RubricError(str(rubric.path), f"{spec.path}.{p}", msg) for p, msg in validate(spec, folder)]
    return problems


def _json_path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _path_key(path: str) -> list[Any]:
    """Sort key of a YAML path: questions[10] after questions[9]."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"[\[\].]+", path) if t]


def suggest(name: str, options: Any) -> str | None:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return close[0] if close else None


def load_reference(path: Path, name: str) -> ModuleType:
    """Import the instructor's reference module (trusted code) from its file (`grader.trusted_import`)."""
    return trusted_import.load_reference(path, name)


def load_rubric(path: Path, *, with_reference: bool = True, course: Course | None = None) -> Rubric:
    """Read and validate a rubric of `course` (default: the course whose rubrics/ holds it);
    raises RubricErrors listing every problem found."""
    from grader.checks import REGISTRY  # late: checks import rubric records

    file = str(path)
    try:
        course = course or Course.for_rubric(path)
        course.register_check_kinds()  # the course's own check kinds, before the rubric names them
    except RubricError as exc:
        raise RubricErrors([exc]) from None
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RubricErrors([RubricError(file, "", f"cannot read the rubric: {exc.strerror or exc}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RubricErrors([RubricError(file, where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(data, dict):
        raise RubricErrors([RubricError(file, "", "a rubric must be a YAML mapping with schema_version, assignment, questions...")])
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RubricErrors([RubricError(file, "schema_version", f"this grader reads rubric schema_version {SCHEMA_VERSION}, "
                                        f"the file says {version!r}")])
    validator = jsonschema.Draft202012Validator(rubric_schema(REGISTRY))
    found = [(_json_path(e.absolute_path), message(e), None) for e in validator.iter_errors(data)]
    found += unknown_option_errors(data, REGISTRY)
    errors, seen = [], set()
    for where, problem, suggestion in sorted(found, key=lambda f: _path_key(f[0])):
        if (where, problem) not in seen:  # an option typed by two clauses is reported once
            seen.add((where, problem))
            errors.append(RubricError(file, where, problem, suggestion))
    if errors:
        raise RubricErrors(errors)

    defaults = data.get("defaults", {})
    questions = []
    for qi, q in enumerate(data["questions"]):
        checks = []
        for ci, c in enumerate(q["checks"]):
            checks.append(CheckSpec(
                id=c["id"], kind=c["kind"], question=q["id"], title=c.get("title", c.get("target", c["kind"])),
                points=float(c["points"]), target=c.get("target"), reference=c.get("reference"),
                visibility=c.get("visibility", defaults.get("visibility", "visible")),
                timeout_s=c.get("timeout_s"), training=bool(c.get("training", False)), params=c.get("params", {}),
                rubric_items=tuple(RubricItem(i["finding"], float(i["points"]), i["message"]) for i in c.get("rubric_items", [])),
                known_mistakes=tuple(KnownMistake(**m) for m in c.get("known_mistakes", [])),
                path=f"questions[{qi}].checks[{ci}]", public=bool(c.get("public", False))))
        questions.append(Question(id=q["id"], title=q.get("title", q["id"]), points=float(q["points"]), checks=tuple(checks)))
    sub = data["submission"]
    rubric = Rubric(path=Path(path), assignment=data["assignment"], title=data.get("title", data["assignment"]),
                    reference_name=data["reference"], code_files=list(sub["code"]), answer_files=list(sub.get("answers", [])),
                    load_mode=sub.get("load", "definitions"), limits=dict(data.get("limits", {})), questions=questions,
                    total_points=float(data.get("total_points", sum(q.points for q in questions))),
                    course=course, handout=data.get("handout"))

    problems: list[RubricError] = []
    if with_reference:
        try:
            rubric.reference = load_reference(rubric.reference_path, rubric.reference_name)
        except FileNotFoundError:
            problems.append(RubricError(file, "reference", f"reference module {rubric.reference_path} does not exist"))
        except Exception as exc:  # the instructor's module failed to import: say how
            problems.append(RubricError(file, "reference", f"reference module {rubric.reference_path} failed to import: "
                                        f"{type(exc).__name__}: {exc}"))
    problems += _meaning_checks(rubric, REGISTRY, file)
    if problems:
        raise RubricErrors(problems)
    return rubric


def _meaning_checks(rubric: Rubric, registry: dict[str, Any], file: str) -> list[RubricError]:
    problems: list[RubricError] = []
    seen: set[str] = set()
    ref_names = [n for n in dir(rubric.reference) if not n.startswith("_")] if rubric.reference else None
    for qi, q in enumerate(rubric.questions):
        total = sum(c.points for c in q.checks)
        if abs(total - q.points) > 1e-9:
            problems.append(RubricError(file, f"questions[{qi}].points",
                                        f"question {q.id} is worth {q.points:g} points but its checks add up to {total:g}"))
        for c in q.checks:
            if c.id in seen:
                problems.append(RubricError(file, f"{c.path}.id", f"check id {c.id!r} is used twice"))
            seen.add(c.id)
            if not c.id.startswith(q.id):
                problems.append(RubricError(file, f"{c.path}.id", f"check id {c.id!r} must start with its question id {q.id!r}"))
            kind = registry.get(c.kind)
            if kind is None:
                problems.append(RubricError(file, f"{c.path}.kind", f"unknown check kind {c.kind!r} "
                                            f"(known: {', '.join(sorted(registry))})", suggest(c.kind, registry)))
                continue
            problems += [RubricError(file, f"{c.path}.{p}", msg) for p, msg in kind.validate_spec(c)]
            if ref_names is not None:
                unresolved: list[RubricError] = []
                for attr, name in (("reference", c.reference), *(("known_mistakes.reference", m.reference) for m in c.known_mistakes)):
                    if not name:
                        continue
                    try:
                        resolve_reference(rubric.reference, name)
                    except ReferenceNameError as exc:
                        unresolved.append(RubricError(file, f"{c.path}.{attr}", exc.problem, exc.suggestion))
                problems += unresolved
                if not unresolved:  # kinds that read values from the reference (tables, symbols) check them here
                    problems += [RubricError(file, f"{c.path}.{p}", msg) for p, msg in kind.validate_with_reference(c, rubric.reference)]
            findings = set(kind.findings) | {m.finding for m in c.known_mistakes}
            for ii, item in enumerate(c.rubric_items):
                if item.finding not in findings:
                    problems.append(RubricError(file, f"{c.path}.rubric_items[{ii}].finding",
                                                f"check kind {c.kind} never reports {item.finding!r} "
                                                f"(it reports: {', '.join(sorted(findings))})", suggest(item.finding, findings)))
                if -item.points > c.points + 1e-9:
                    problems.append(RubricError(file, f"{c.path}.rubric_items[{ii}].points",
                                                f"deduction {item.points:g} is larger than the check's {c.points:g} points"))
    total = sum(q.points for q in rubric.questions)
    if abs(total - rubric.total_points) > 1e-9:
        problems.append(RubricError(file, "total_points", f"total_points is {rubric.total_points:g} but the questions add up to {total:g}"))
    return problems
