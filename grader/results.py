"""The records every stage shares: what a check found, and a whole grading run.

Reporters (Gradescope, terminal, tables) all consume the same `GradingRun`;
records are plain data and serialise to and from JSON so they can cross process
boundaries (batch grading) without pickle.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Visibility = Literal["visible", "hidden", "after_due_date", "after_published"]
Status = Literal["passed", "failed"]


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
    manual: bool = False
    skipped: bool = False
    method: str | None = None  # how the verdict was reached, e.g. "simplify", "random-points"
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.score >= self.max_score and not self.manual

    @property
    def name(self) -> str:
        """The Gradescope test name: the check id first, so instructors can grep for it."""
        return f"{self.check_id} {self.title}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CheckResult":
        data = dict(data)
        data["items"] = [AppliedItem(**i) for i in data.get("items", [])]
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
        return round(sum(r.score for r in self.results), 6)

    @property
    def max_score(self) -> float:
        return round(sum(r.max_score for r in self.results), 6)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["score"] = self.score
        data["max_score"] = self.max_score
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GradingRun":
        data = {k: v for k, v in data.items() if k not in ("score", "max_score")}
        data["results"] = [CheckResult.from_dict(r) for r in data.get("results", [])]
        return cls(**data)
