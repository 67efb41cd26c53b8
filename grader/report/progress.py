"""The progress bar of a batch (`grader grade`): submissions done out of those to grade, elapsed time, an estimate.

Drawn by rich, in the style of the training checks' bar (`grader.training.waiting`), from its own refresh
thread, so the batch loop only reports each finished submission. It is shown only on a terminal and not
under ``-q``; the one line per finished submission is printed above it (or alone, when there is no bar).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


@contextlib.contextmanager
def batch_progress(console: Console, *, enabled: bool, quiet: bool = False) -> Iterator["BatchProgress"]:
    """A `BatchProgress` for the block: a live bar when `enabled` (and the console is a terminal)."""
    bar = None
    if enabled and not quiet and console.is_terminal:
        bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("submissions"), TimeElapsedColumn(), TextColumn("elapsed, about"),
                       TimeRemainingColumn(), TextColumn("left"), console=console, transient=True,
                       refresh_per_second=4)
    tracker = BatchProgress(console, bar, quiet=quiet)
    if bar is None:
        yield tracker
        return
    with bar:
        yield tracker


class BatchProgress:
    """Counts finished submissions against those planned; prints one line per finished submission."""

    def __init__(self, console: Console, bar: Progress | None, *, quiet: bool) -> None:
        self.console, self.bar, self.quiet = console, bar, quiet
        self.task = None

    def planned(self, to_grade: int, reused: int) -> None:
        if reused and not self.quiet:
            self.console.print(f"{reused} submission(s) unchanged since their stored grading: reused "
                               f"(--regrade grades them again); {to_grade} to grade", highlight=False)
        if self.bar is not None:
            self.task = self.bar.add_task("grading", total=to_grade)

    def finished(self, line: str) -> None:
        if not self.quiet:
            self.console.print(line, highlight=False, markup=False)
        if self.bar is not None and self.task is not None:
            self.bar.advance(self.task)

    def callback(self, describe: Callable[..., str]) -> Callable[..., None]:
        """An `on_done(name, run)` for `grade_folder` that prints `describe(name, run)` and advances the bar."""
        return lambda name, run: self.finished(describe(name, run))


__all__ = ["BatchProgress", "batch_progress"]
