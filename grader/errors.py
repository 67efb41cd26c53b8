"""Exception roots of the grader, and the one place that turns them into text.

Three roots, by whose fault it is (STYLE.md): the submission's, the rubric's
(the course's own setup), and the grader's. Exceptions carry fields; `describe`
renders them, so wording lives in one place.
"""
from __future__ import annotations

from dataclasses import dataclass, field


class GraderError(Exception):
    """A fault in the grader itself: a bug or an unusable environment."""


@dataclass
class RubricError(Exception):
    """The rubric (or the reference it names) is wrong: the instructor must fix it."""

    file: str
    path: str  # where inside the rubric, e.g. "questions[2].checks[0].kind"
    problem: str
    suggestion: str | None = None

    def __str__(self) -> str:
        return describe(self)


@dataclass
class RubricErrors(Exception):
    """Several rubric problems found in one pass, reported together."""

    errors: list[RubricError] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(describe(e) for e in self.errors)


@dataclass
class SubmissionError(Exception):
    """The student's submission cannot be used as handed in (missing file, bad answers file...)."""

    problem: str
    hint: str | None = None

    def __str__(self) -> str:
        return describe(self)


@dataclass
class UsageError(Exception):
    """The command line asked for something impossible."""

    problem: str

    def __str__(self) -> str:
        return self.problem


def describe(error: BaseException) -> str:
    """One sentence (or a few) that says what is wrong and what to do next."""
    if isinstance(error, RubricError):
        where = f"{error.file}: at {error.path}" if error.path else error.file
        text = f"{where}: {error.problem}"
        if error.suggestion:
            text += f" (did you mean {error.suggestion!r}?)"
        return text
    if isinstance(error, RubricErrors):
        return str(error)
    if isinstance(error, SubmissionError):
        return error.problem + (f" {error.hint}" if error.hint else "")
    return f"{type(error).__name__}: {error}"
