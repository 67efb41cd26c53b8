"""Class tables: one row per submission, one column per check (CSV, and a terminal summary)."""
from __future__ import annotations

import csv
from pathlib import Path

from rich.console import Console
from rich.table import Table

from grader.results import GradingRun


def check_ids(runs: list[GradingRun]) -> list[str]:
    ids: list[str] = []
    for run in runs:
        for r in run.results:
            if r.check_id not in ids:
                ids.append(r.check_id)
    return ids


def write_csv(runs: list[GradingRun], path: Path, names: list[str]) -> None:
    ids = check_ids(runs)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", "score", "max_score", "isolation", "seconds", *ids, "notes"])
        for name, run in zip(names, runs):
            by_id = {r.check_id: r.score for r in run.results}
            writer.writerow([name, f"{run.score:g}", f"{run.max_score:g}", run.isolation, f"{run.seconds:.1f}",
                             *[f"{by_id[i]:g}" if i in by_id else "" for i in ids], " | ".join(run.load_messages)[:500]])


def print_summary(runs: list[GradingRun], names: list[str], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="Class summary")
    table.add_column("submission", no_wrap=True)
    table.add_column("score", justify="right")
    table.add_column("failed checks", overflow="fold")
    for name, run in zip(names, runs):
        failed = [r.check_id for r in run.results if not r.passed and not r.manual and not r.skipped]
        table.add_row(name, f"{run.score:g}/{run.max_score:g}", ", ".join(failed) or "-")
    console.print(table)
