"""The readable terminal report: one table per submission, then load messages.

The instructor's view (the default) shows every check with its status, marks
hidden ones, and gives the whole total beside the total students see. The
student view (``student=True``, `grader check --as-student`) shows what a
student would see now: only visible checks, and totals over them alone, so a
hidden check's points never show. Text comes from `GradingRun.cleaned`: no
escape sequence from a submission reaches the terminal.
"""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from grader.results import CheckResult, GradingRun

STATUS_STYLE = {"manual": ("manual", "cyan"), "skipped": ("skipped", "dim")}


def _score_cell(r: CheckResult) -> Text:
    if r.status in STATUS_STYLE:
        label, style = STATUS_STYLE[r.status]
        return Text(label, style=style)
    score = f"{r.score:g}/{r.max_score:g}"
    if r.status == "grader_error":
        return Text(f"{score}\ngrader error", style="magenta")
    if r.status == "undecided":
        return Text(f"{score}\nundecided", style="magenta")
    return Text(score, style="green" if r.status == "passed" else ("yellow" if r.score > 0 else "red"))


def print_run(run: GradingRun, console: Console | None = None, *, verbose: bool = False, student: bool = False) -> None:
    console = console or Console()
    run = run.cleaned()
    results = [r for r in run.results if not (student and r.hidden)]
    table = Table(title=f"{escape(run.assignment)}: {escape(run.submission)}", show_lines=True, expand=True)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("what is checked / rubric items / feedback", overflow="fold", ratio=1)
    for r in results:
        lines = [escape(r.title) + ("" if student or not r.hidden else f" [dim]({escape(r.visibility)})[/dim]")]
        lines += [f"[{'red' if item.points < 0 else 'green'}]{escape(item.label())}[/]" for item in r.items]
        if verbose or r.status != "passed":
            lines += [escape(f) for f in (r.feedback if verbose else r.feedback[:3])]
        if r.review and not student:
            lines.append(f"[magenta]review: {escape(r.review)}[/magenta]")
        table.add_row(escape(r.check_id), _score_cell(r), "\n".join(lines))
    console.print(table)
    for message in run.load_messages:
        console.print(f"[yellow]note:[/yellow] {escape(message)}", highlight=False)
    flagged = [r for r in results if r.needs_review]
    if flagged and not student:
        console.print(f"[magenta]to review:[/magenta] " + ", ".join(f"{escape(r.check_id)} ({r.status})" for r in flagged),
                      highlight=False)
    if student or run.visible_max_score == run.max_score:
        total = f"Total: {run.visible_score:g} / {run.visible_max_score:g}"
    else:
        total = (f"Total: {run.score:g} / {run.max_score:g} (students see {run.visible_score:g} / "
                 f"{run.visible_max_score:g}: hidden checks left out)")
    console.print(f"[bold]{total}[/bold]   (isolation: {escape(run.isolation)}, seed {run.seed}, {run.seconds:.1f} s)",
                  highlight=False)
