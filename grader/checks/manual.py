"""Kind ``manual``: collect a written answer for a human grader; worth 0 automatic points."""
from __future__ import annotations

from grader.checks import register
from grader.checks.base import Check, Context, Outcome
from grader.checks.options import NONNEG, Option
from grader.rubric.model import CheckSpec

MAX_SHOWN = 4000


@register
class ManualCheck(Check):
    kind = "manual"
    needs_code = False
    needs_reference = False
    options = (Option("points_by_hand", NONNEG, "what the answer is worth when graded by hand (shown to students)"),)

    @classmethod
    def validate_spec(cls, spec: CheckSpec) -> list[tuple[str, str]]:
        problems = super().validate_spec(spec)
        if spec.points != 0:
            problems.append(("points", "a manual check is graded by hand: give it 0 points here "
                             "(params.points_by_hand says what it is worth)"))
        return problems

    def run(self, ctx: Context) -> Outcome:
        worth = self.params["points_by_hand"]
        note = f"Needs manual grading{f' (worth {worth:g} points)' if worth else ''}: not scored automatically."
        text = ctx.answers.get(self.spec.target or "")
        if text is None:
            return Outcome(passed=False, manual=True, findings=["missing"],
                           feedback=[note, f"No answer found under '{self.spec.target}' in the answers."])
        text = str(text)
        shown = text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + f"\n[... {len(text) - MAX_SHOWN} more characters ...]"
        return Outcome(passed=False, manual=True, feedback=[note, "Answer submitted:", shown])
