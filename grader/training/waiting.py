"""A progress bar on the terminal while a model trains somewhere the parent cannot watch step by step.

Training happens in the sandbox child, which answers one request with one
reply; relaying the harness's progress events would need a second channel
through the trust boundary. The parent knows the time budget, though, so it
shows a spinner, the elapsed time and a bar of the budget used (a run that
finishes early simply ends the bar). rich draws it on stderr from its own
refresh thread, so the parent can block on the sandbox meanwhile.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.progress_bar import ProgressBar
from rich.text import Text


class BudgetBar(ProgressColumn):
    """A bar filled by the elapsed time over the task's total (the budget in seconds)."""

    def __init__(self, width: int = 20) -> None:
        super().__init__()
        self.width = width

    def render(self, task: Task) -> ProgressBar:
        total = task.total or 1.0
        return ProgressBar(total=total, completed=min(task.elapsed or 0.0, total), width=self.width)


class BudgetText(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"of {task.total:.0f} s budget", style="progress.elapsed")


@contextlib.contextmanager
def budget_progress(description: str, budget_s: float, *, enabled: bool, console: Console | None = None) -> Iterator[None]:
    """Show `description`, a spinner and the budget used while the block runs (nothing if not enabled)."""
    if not enabled:
        yield
        return
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BudgetBar(), TimeElapsedColumn(),
                        BudgetText(), console=console or Console(stderr=True), transient=True, refresh_per_second=4)
    with progress:
        progress.add_task(description, total=max(budget_s, 1.0))
        yield


__all__ = ["BudgetBar", "BudgetText", "budget_progress"]
