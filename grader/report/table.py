"""Class tables: one row per submission, one column per check (CSV, and a terminal summary).

Besides each check's score, every row says how many checks hit a grader
error (``grader_errors``: their points are kept until reviewed), how many
reached no verdict (``undecided``: 0 for now), and which checks to review
(``review``: ``id:status`` pairs), so an instructor can tell grader faults
from student errors. Text comes from `GradingRun.cleaned`.
"""
from __future__ import annotations

import csv
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from grader.report.text import clean_text
from grader.results import GradingRun


def check_ids(runs: list[GradingRun]) -> list[str]:
    ids: list[str] = []
    for run in runs:
        for r in run.results:
            if r.check_id not in ids:
                ids.append(r.check_id)
    return ids


def review_cell(run: GradingRun) -> str:
    return " ".join(f"{r.check_id}:{r.status}" for r in run.to_review())


def write_csv(runs: list[GradingRun], path: Path, names: list[str]) -> None:
    runs = [run.cleaned() for run in runs]
    ids = check_ids(runs)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", "score", "max_score", "isolation", "seconds", "grader_errors", "undecided",
                         "review", *ids, "notes"])
        for name, run in zip(names, runs):
            by_id = {r.check_id: r.score for r in run.results}
            writer.writerow([clean_text(name), f"{run.score:g}", f"{run.max_score:g}", run.isolation, f"{run.seconds:.1f}",
                             len(run.with_status("grader_error")), len(run.with_status("undecided")), review_cell(run),
                             *[f"{by_id[i]:g}" if i in by_id else "" for i in ids], " | ".join(run.load_messages)[:500]])


def review_summary(runs: list[GradingRun]) -> str:
    """The closing line of `grader grade`: how many grader errors and undecided checks, in how many submissions."""
    errors = [len(run.with_status("grader_error")) for run in runs]
    undecided = [len(run.with_status("undecided")) for run in runs]
    parts = []
    for count, per_run, what, column in ((sum(errors), errors, "grader error", "grader_errors"),
                                         (sum(undecided), undecided, "undecided check", "undecided")):
        hit = sum(1 for n in per_run if n)
        parts.append(f"{count} {what}{'s' if count != 1 else ''} in {hit} submission{'s' if hit != 1 else ''}"
                     + (f" (see grades.csv column {column})" if count else ""))
    return "; ".join(parts) + ("." if not sum(errors) + sum(undecided) else "; the column review lists the checks.")


def print_summary(runs: list[GradingRun], names: list[str], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="Class summary")
    table.add_column("submission", no_wrap=True)
    table.add_column("score", justify="right")
    table.add_column("failed checks", overflow="fold")
    table.add_column("to review", overflow="fold")
    for name, run in zip(names, [run.cleaned() for run in runs]):
        failed = [r.check_id for r in run.results if r.status == "failed"]
        table.add_row(escape(clean_text(name)), f"{run.score:g}/{run.max_score:g}", escape(", ".join(failed) or "-"),
                      escape(review_cell(run) or "-"))
    console.print(table)
