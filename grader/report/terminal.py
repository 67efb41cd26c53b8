"""The readable terminal report: one table per submission, then load messages."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from grader.results import GradingRun


def print_run(run: GradingRun, console: Console | None = None, *, verbose: bool = False) -> None:
    console = console or Console()
    table = Table(title=f"{run.assignment}: {run.submission}", show_lines=True, expand=True)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("what is checked / rubric items / feedback", overflow="fold", ratio=1)
    for r in run.results:
        if r.manual:
            score, style = "manual", "cyan"
        elif r.skipped:
            score, style = "skipped", "dim"
        else:
            score = f"{r.score:g}/{r.max_score:g}"
            style = "green" if r.passed else ("yellow" if r.score > 0 else "red")
        lines = [escape(r.title)] + [f"[{'red' if item.points < 0 else 'green'}]{escape(item.label())}[/]" for item in r.items]
        if verbose or not r.passed:
            lines += [escape(f) for f in (r.feedback if verbose else r.feedback[:3])]
        table.add_row(r.check_id, Text(score, style=style), "\n".join(lines))
    console.print(table)
    for message in run.load_messages:
        console.print(f"[yellow]note:[/yellow] {escape(message)}", highlight=False)
    console.print(f"[bold]Total: {run.score:g} / {run.max_score:g}[/bold]   "
                  f"(isolation: {run.isolation}, seed {run.seed}, {run.seconds:.1f} s)", highlight=False)
