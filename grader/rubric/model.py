"""Typed records for a validated rubric (what the YAML says, after checking)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class RubricItem:
    """A Gradescope-style rubric line that applies when a check reports `finding`."""

    finding: str
    points: float  # <= 0
    message: str


@dataclass(frozen=True)
class KnownMistake:
    """A wrong answer students often give, recognised and explained (value, expression or reference function)."""

    feedback: str
    reference: str | None = None
    value: Any = None
    expression: str | None = None
    credit: float = 0.0
    finding: str = "known_mistake"


@dataclass(frozen=True)
class CheckSpec:
    id: str
    kind: str
    question: str
    title: str
    points: float
    target: str | None = None
    reference: str | None = None
    visibility: str = "visible"
    timeout_s: float | None = None
    training: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    rubric_items: tuple[RubricItem, ...] = ()
    known_mistakes: tuple[KnownMistake, ...] = ()
    path: str = ""  # where in the rubric file, for error messages
    #: In the student self-test kit (`grader kit build`), its inputs and expected outputs shipped to students.
    #: False unless the rubric says so: a forgotten key never reveals an answer.
    public: bool = False


@dataclass(frozen=True)
class Question:
    id: str
    title: str
    points: float
    checks: tuple[CheckSpec, ...]


@dataclass
class Rubric:
    path: Path
    assignment: str
    title: str
    reference_name: str
    code_files: list[str]
    answer_files: list[str]
    load_mode: str
    limits: dict[str, Any]
    questions: list[Question]
    total_points: float
    reference: ModuleType | None = None
    course: Any = None  # grader.course.Course the rubric was loaded from
    handout: str | None = None  # the students' handout, relative to the course folder

    @property
    def checks(self) -> list[CheckSpec]:
        return [c for q in self.questions for c in q.checks]

    @property
    def reference_path(self) -> Path:
        """The reference module's file, as the rubric's course lays it out (grader.course)."""
        from grader.course import Course

        course = self.course if self.course is not None else Course(self.path.resolve().parent.parent)
        return course.reference_module(self.reference_name)
