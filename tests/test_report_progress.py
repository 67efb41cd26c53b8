"""The batch progress bar (grader/report/progress.py): counts, elapsed, an estimate; silent off a terminal and under -q."""
from __future__ import annotations

import io

from rich.console import Console

from grader.report.progress import batch_progress


def _console(*, terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=120, color_system=None), buffer


def test_on_a_terminal_the_bar_counts_submissions_with_time_elapsed_and_left():
    console, buffer = _console(terminal=True)
    with batch_progress(console, enabled=True) as progress:
        progress.planned(to_grade=3, reused=2)
        progress.finished("alice: 90/90")
        assert progress.bar is not None
        progress.bar.refresh()
        task = progress.bar.tasks[0]
        assert (task.completed, task.total) == (1, 3)
        progress.finished("bob: 38/90")
        assert progress.bar.tasks[0].completed == 2
    text = buffer.getvalue()
    assert "2 submission(s) unchanged since their stored grading: reused" in text and "3 to grade" in text
    assert "alice: 90/90" in text and "bob: 38/90" in text
    assert "1/3 submissions" in text and "elapsed, about" in text and "left" in text


def test_off_a_terminal_only_the_lines_are_printed():
    console, buffer = _console(terminal=False)
    with batch_progress(console, enabled=True) as progress:
        progress.planned(to_grade=1, reused=0)
        progress.finished("alice: 90/90")
        assert progress.bar is None
    assert buffer.getvalue() == "alice: 90/90\n"


def test_quiet_prints_nothing_even_on_a_terminal():
    console, buffer = _console(terminal=True)
    with batch_progress(console, enabled=True, quiet=True) as progress:
        progress.planned(to_grade=2, reused=1)
        progress.finished("alice: 90/90")
        assert progress.bar is None
    assert buffer.getvalue() == ""
