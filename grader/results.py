"""The records every stage shares: what a check found, and a whole grading run.

Reporters (Gradescope, terminal, tables) all consume the same `GradingRun`;
records are plain data and serialise to and from JSON so they can cross process
boundaries (batch grading) without pickle.

Every `CheckResult` carries a `status`, decided once (by `grader.checks.base.finish`)
and shown by every reporter:

- ``passed``: the check's verdict is that the work is right (full points).
- ``failed``: the verdict is that something is wrong; rubric items say what it costs.
- ``grader_error``: the grader's own code failed before any student-supplied value
  was involved. Nothing is deducted automatically: the check keeps its points
  (score = max) and is listed for review.
- ``undecided``: no verdict could be reached for reasons outside the student's
  work as judged (the grader's own time budget ran out before the check ran,
  grading stopped from outside, or the process grading the submission died).
  It scores 0 for now and is listed for review: a submission could run the
  clock down on purpose, so "undecided" must never earn points by itself.
- ``manual``: collected for a human grader (0 automatic points).
- ``skipped``: not graded in this run (``--skip-training``, an optional answer
  left out): worth 0 of 0.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from grader.report.text import clean_text

Visibility = Literal["visible", "hidden", "after_due_date", "after_published"]
Status = Literal["passed", "failed", "grader_error", "undecided", "manual", "skipped"]
STATUSES: tuple[str, ...] = ("passed", "failed", "grader_error", "undecided", "manual", "skipped")
#: Statuses an instructor should look at: the automatic score is provisional.
REVIEW_STATUSES: tuple[str, ...] = ("grader_error", "undecided")


@dataclass(frozen=True)
class AppliedItem:
    """A rubric item that applied to this submission, Gradescope style: "-2 pts Low accuracy"."""

    id: str
    points: float  # negative for a deduction
    message: str

    def label(self) -> str:
        pts = f"{self.points:+g}".replace("+", "+")
        return f"{pts} pts {self.message}"


@dataclass
class CheckResult:
    """The verdict on one check, decided in the trusted parent process."""

    check_id: str
    title: str
    question: str
    score: float
    max_score: float
    feedback: list[str] = field(default_factory=list)
    items: list[AppliedItem] = field(default_factory=list)
    visibility: Visibility = "visible"
    status: Status = "failed"
    review: str | None = None  # why an instructor should look at this check (None: nothing to review)
    method: str | None = None  # how the verdict was reached, e.g. "simplify", "random-points"
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown check status {self.status!r}; expected one of {', '.join(STATUSES)}")

    @property
    def passed(self) -> bool:
        """No points lost to a verdict on the student's work (a skipped 0/0 check counts as passed, as before)."""
        return self.status in ("passed", "skipped")

    @property
    def manual(self) -> bool:
        return self.status == "manual"

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    @property
    def needs_review(self) -> bool:
        return self.status in REVIEW_STATUSES or self.review is not None

    @property
    def hidden(self) -> bool:
        """Not shown to students now: only ``visible`` checks are (``after_*`` ones are shown later)."""
        return self.visibility != "visible"

    @property
    def name(self) -> str:
        """The Gradescope test name: the check id first, so instructors can grep for it."""
        return f"{self.check_id} {self.title}"

    def cleaned(self) -> "CheckResult":
        """A copy whose text (feedback, item labels, title) holds no control characters or bidi overrides."""
        return replace(self, title=clean_text(self.title), feedback=[clean_text(f) for f in self.feedback],
                       items=[AppliedItem(i.id, i.points, clean_text(i.message)) for i in self.items],
                       review=clean_text(self.review) if self.review is not None else None,
                       method=clean_text(self.method) if self.method is not None else None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CheckResult":
        data = dict(data)
        data["items"] = [AppliedItem(**i) for i in data.get("items", [])]
        # Records written before statuses existed carried two booleans instead.
        manual, skipped = data.pop("manual", False), data.pop("skipped", False)
        if "status" not in data:
            data["status"] = ("manual" if manual else "skipped" if skipped
                              else "passed" if data["score"] >= data["max_score"] else "failed")
        return cls(**data)


@dataclass
class GradingRun:
    """Everything known about grading one submission."""

    assignment: str
    submission: str
    results: list[CheckResult] = field(default_factory=list)
    isolation: str = "unknown"
    load_messages: list[str] = field(default_factory=list)
    seconds: float = 0.0
    seed: int = 0
    device: str = "cpu"

    @property
    def score(self) -> float:
        """The whole score, hidden checks included: what the instructor records."""
        return round(sum(r.score for r in self.results), 6)

    @property
    def max_score(self) -> float:
        return round(sum(r.max_score for r in self.results), 6)

    @property
    def visible_score(self) -> float:
        """The score on the checks students see now; hidden checks' points never enter a visible total."""
        return round(sum(r.score for r in self.results if not r.hidden), 6)

    @property
    def visible_max_score(self) -> float:
        return round(sum(r.max_score for r in self.results if not r.hidden), 6)

    def with_status(self, *statuses: str) -> list[CheckResult]:
        return [r for r in self.results if r.status in statuses]

    def to_review(self) -> list[CheckResult]:
        """Checks whose automatic score is provisional (grader errors, undecided ones, flagged failures)."""
        return [r for r in self.results if r.needs_review]

    def cleaned(self) -> "GradingRun":
        """A copy fit for a terminal or a report: every student-derived string passed through `clean_text`.

        Every reporter starts from this copy (and `to_dict` uses it), so ANSI
        sequences, other control characters and bidi overrides that a
        submission put into its source, its exception messages, its answers or
        its file names never reach a terminal, a CSV or a results file.
        """
        return replace(self, submission=clean_text(self.submission), results=[r.cleaned() for r in self.results],
                       isolation=clean_text(self.isolation), load_messages=[clean_text(m) for m in self.load_messages])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self.cleaned())
        data["score"] = self.score
        data["max_score"] = self.max_score
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GradingRun":
        data = {k: v for k, v in data.items() if k not in ("score", "max_score")}
        data["results"] = [CheckResult.from_dict(r) for r in data.get("results", [])]
        return cls(**data)
