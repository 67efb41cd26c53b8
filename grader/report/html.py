"""The class report: one static HTML file (``grades/report.html``) with its plots embedded as inline SVG.

Built from the same `GradingRun` records as grades.csv (the batch writes one
``record.json`` per submission, so `grader report FOLDER` rebuilds the page
without regrading). It shows the score distribution, each check's pass rate,
the known mistakes found and how often, the accuracies training checks
reached against their thresholds, the checks to review (grader errors,
undecided checks, models judged in the sandbox), and a link to each
student's results file.

Everything a student controls (folder names, feedback, echoed answers,
exception messages) is hostile: the page is rendered by Jinja2 with
autoescaping on, the SVG plots are built from escaped text too, links are
URL-quoted relative paths, and a Content-Security-Policy forbids any script,
so markup that slipped through anyway could still not run. The plots are
drawn here as plain SVG (a few rectangles and lines) rather than with
matplotlib: no import cost, no font lookup, and every label escaped in one place.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment
from markupsafe import Markup, escape

from grader.report.text import clean_text
from grader.results import STATUSES, GradingRun

REPORT = "report.html"
RECORD = "record.json"  # what the batch writes beside each results.json (grader.batch.RECORD)
RESULTS = "results.json"
MAX_TEXT = 300  # review notes and feedback lines are cut here: the page links to the full results

# The training check's feedback: "... reached 93.1% accuracy on ... ; needed 90.0% ..." or "... below the 90.0% needed".
# The record keeps the numbers only in this sentence, so the report reads them back from it.
_ACCURACY = re.compile(r"reached (\d+(?:\.\d+)?)% accuracy\b.*?(?:needed (\d+(?:\.\d+)?)%|below the (\d+(?:\.\d+)?)% needed)")
STATUS_COLOURS = {"passed": "#2e7d32", "failed": "#c62828", "grader_error": "#6a1b9a", "undecided": "#ef6c00",
                  "manual": "#1565c0", "skipped": "#9e9e9e"}


@dataclass(frozen=True)
class Accuracy:
    submission: str
    check_id: str
    accuracy: float  # fraction
    threshold: float  # fraction
    passed: bool


@dataclass(frozen=True)
class ReviewRow:
    submission: str
    link: str
    check_id: str
    status: str
    method: str
    why: str


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    text = clean_text(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link(name: str) -> str:
    """A relative link to a submission's results file; the name is quoted, so it can never become a scheme."""
    return quote(name, safe="") + "/" + RESULTS


def accuracies(runs: list[GradingRun], names: list[str]) -> list[Accuracy]:
    """Every accuracy a training check reported, with its threshold, read from the check's feedback."""
    found = []
    for name, run in zip(names, runs):
        for r in run.results:
            if r.status not in ("passed", "failed"):
                continue
            for line in r.feedback:
                for m in _ACCURACY.finditer(line):
                    threshold = m.group(2) or m.group(3)
                    found.append(Accuracy(name, r.check_id, float(m.group(1)) / 100, float(threshold) / 100,
                                          r.status == "passed"))
    return found


# --- plots (inline SVG) ---------------------------------------------------------------------------------

def _svg(width: int, height: int, body: list[str], label: str) -> Markup:
    return Markup(f'<svg class="plot" role="img" aria-label="{escape(label)}" width="{width}" height="{height}" '
                  f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
                  + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = 12, fill: str = "#222") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" '
            f'font-family="sans-serif">{escape(text)}</text>')


def score_histogram(scores: list[float], max_score: float, bins: int = 10) -> Markup:
    """Bars of how many submissions scored in each tenth of the maximum."""
    width, height, left, bottom, top = 560, 240, 40, 40, 20  # the right margin below is 10
    max_score = max(max_score, max(scores, default=0.0), 1e-9)
    counts = [0] * bins
    for s in scores:
        counts[min(bins - 1, max(0, int(s / max_score * bins)))] += 1
    peak = max(counts + [1])
    bar_w = (width - left - 10) / bins
    plot_h = height - bottom - top
    body = [f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#444"/>']
    for i, c in enumerate(counts):
        h = plot_h * c / peak
        x = left + i * bar_w
        body.append(f'<rect class="bar" x="{x + 2:.1f}" y="{height - bottom - h:.1f}" width="{bar_w - 4:.1f}" '
                    f'height="{h:.1f}" fill="#1565c0"><title>{c} submission(s)</title></rect>')
        if c:
            body.append(_text(x + bar_w / 2, height - bottom - h - 4, str(c), anchor="middle", size=11))
        # bin edges under the axis (the bar between two labels holds the scores from the left one up to the right one)
        body.append(_text(x, height - bottom + 14, f"{max_score * i / bins:.3g}", anchor="middle", size=10))
    body.append(_text(left + bins * bar_w, height - bottom + 14, f"{max_score:.3g}", anchor="middle", size=10))
    body.append(_text((width + left) / 2, height - 6, f"score (of {max_score:g})", anchor="middle"))
    body.append(_text(4, top - 6, "submissions", size=11))
    return _svg(width, height, body, "score distribution")


def stacked_bars(rows: list[tuple[str, Counter[str]]], label: str) -> Markup:
    """One horizontal bar per check, split by status (passed first), with the pass rate written beside it."""
    row_h, left, width, right = 24, 190, 760, 70
    height = 30 + row_h * max(len(rows), 1) + 26
    bar_w = width - left - right
    body = []
    for i, (check_id, counts) in enumerate(rows):
        y = 20 + i * row_h
        total = sum(counts.values()) or 1
        x = float(left)
        body.append(_text(left - 6, y + 15, _cut(check_id, 28), anchor="end"))
        for status in STATUSES:
            n = counts.get(status, 0)
            if not n:
                continue
            w = bar_w * n / total
            body.append(f'<rect class="bar" x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                        f'fill="{STATUS_COLOURS[status]}"><title>{escape(check_id)}: {n} {status}</title></rect>')
            x += w
        decided = counts.get("passed", 0) + counts.get("failed", 0)
        rate = f"{counts.get('passed', 0) / decided:.0%}" if decided else "n/a"
        body.append(_text(width - right + 6, y + 15, rate))
    legend_y = 30 + row_h * max(len(rows), 1) + 6
    x = float(left)
    for status in STATUSES:
        body.append(f'<rect x="{x:.1f}" y="{legend_y}" width="12" height="12" fill="{STATUS_COLOURS[status]}"/>')
        body.append(_text(x + 16, legend_y + 11, status.replace("_", " "), size=11))
        x += 95
    return _svg(width, height, body, label)


def count_bars(rows: list[tuple[str, int]], label: str, colour: str = "#c62828") -> Markup:
    """Horizontal bars of counts, one per labelled row (the known mistakes and how often each was found)."""
    row_h, left, width, right = 24, 330, 760, 40
    height = 20 + row_h * max(len(rows), 1)
    peak = max([n for _, n in rows] + [1])
    body = []
    for i, (text, n) in enumerate(rows):
        y = 10 + i * row_h
        w = (width - left - right) * n / peak
        body.append(_text(left - 6, y + 15, _cut(text, 48), anchor="end"))
        body.append(f'<rect class="bar" x="{left}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{colour}">'
                    f'<title>{escape(text)}: {n}</title></rect>')
        body.append(_text(left + w + 6, y + 15, str(n)))
    return _svg(width, height, body, label)


def accuracy_plot(found: list[Accuracy]) -> Markup:
    """Per training check, each submission's accuracy as a dot, its threshold(s) as a dashed line."""
    checks = list(dict.fromkeys(a.check_id for a in found))
    row_h, left, width, right = 44, 190, 760, 20
    height = 30 + row_h * max(len(checks), 1) + 30
    lo = min([a.accuracy for a in found] + [a.threshold for a in found] + [1.0])
    lo = max(0.0, (int(lo * 10) / 10) - 0.1 if lo < 1 else 0.9)
    span = max(1.0 - lo, 1e-9)
    plot_w = width - left - right

    def px(v: float) -> float:
        return left + plot_w * (min(max(v, lo), 1.0) - lo) / span

    body = []
    axis_y = 20 + row_h * max(len(checks), 1)
    body.append(f'<line x1="{left}" y1="{axis_y}" x2="{width - right}" y2="{axis_y}" stroke="#444"/>')
    for k in range(11):
        v = lo + span * k / 10
        body.append(f'<line x1="{px(v):.1f}" y1="{axis_y}" x2="{px(v):.1f}" y2="{axis_y + 4}" stroke="#444"/>')
        body.append(_text(px(v), axis_y + 16, f"{v:.0%}", anchor="middle", size=10))
    body.append(_text((left + width - right) / 2, axis_y + 30, "accuracy on held-out images", anchor="middle"))
    for i, check_id in enumerate(checks):
        y = 20 + i * row_h + row_h / 2
        body.append(_text(left - 6, y + 4, _cut(check_id, 28), anchor="end"))
        rows = [a for a in found if a.check_id == check_id]
        for threshold in sorted({a.threshold for a in rows}):
            body.append(f'<line class="threshold" x1="{px(threshold):.1f}" y1="{y - row_h / 2 + 4:.1f}" '
                        f'x2="{px(threshold):.1f}" y2="{y + row_h / 2 - 4:.1f}" stroke="#000" stroke-dasharray="4 3">'
                        f'<title>threshold {threshold:.1%}</title></line>')
        for j, a in enumerate(rows):
            jitter = ((j % 5) - 2) * 3  # spread equal accuracies so each submission stays visible
            body.append(f'<circle class="dot" cx="{px(a.accuracy):.1f}" cy="{y + jitter:.1f}" r="5" '
                        f'fill="{STATUS_COLOURS["passed" if a.passed else "failed"]}" fill-opacity="0.75">'
                        f'<title>{escape(a.submission)}: {a.accuracy:.1%} (threshold {a.threshold:.1%})</title></circle>')
    return _svg(width, height, body, "training accuracies against thresholds")


# --- the page -------------------------------------------------------------------------------------------

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>Class report: {{ assignment }}</title>
<style>
body { font-family: sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; white-space: nowrap; }
.status { font-weight: bold; white-space: nowrap; } .empty { color: #666; font-style: italic; }
.plot { display: block; margin: 1em 0; } .summary span { margin-right: 2em; }
td.text { word-break: break-word; white-space: pre-wrap; }
</style>
</head>
<body>
<h1>Class report: {{ assignment }}</h1>
<p class="summary"><span>{{ n }} submission(s)</span><span>mean {{ mean }} / {{ max_score }}</span>
<span>median {{ median }}</span><span>{{ n_review }} check(s) to review</span><span>generated {{ generated }}</span></p>

<h2 id="scores">Score distribution</h2>
{{ histogram }}

<h2 id="checks">Pass rate per check</h2>
<p>Share of submissions per status; the figure on the right is passed / (passed + failed).</p>
{{ check_plot }}
<table id="check-table"><tr><th>check</th><th>title</th>{% for s in statuses %}<th>{{ s }}</th>{% endfor %}</tr>
{% for row in check_rows %}<tr><td>{{ row.id }}</td><td>{{ row.title }}</td>{% for s in statuses %}<td class="num">{{ row.counts.get(s, 0) }}</td>{% endfor %}</tr>
{% endfor %}</table>

<h2 id="mistakes">Known mistakes found</h2>
{% if mistakes %}{{ mistake_plot }}
<table id="mistake-table"><tr><th>check</th><th>rubric item</th><th>points</th><th>submissions</th></tr>
{% for m in mistakes %}<tr><td>{{ m.check_id }}</td><td>{{ m.message }}</td><td class="num">{{ m.points }}</td><td class="num">{{ m.count }}</td></tr>
{% endfor %}</table>
{% else %}<p class="empty">No rubric item applied to any submission.</p>{% endif %}

<h2 id="training">Training accuracies</h2>
{% if accuracies %}{{ accuracy_plot }}
<p>Each dot is one submission (green: reached its threshold; red: below); dashed lines are the thresholds.</p>
{% else %}<p class="empty">No training check reported an accuracy in these results (none in the rubric, or skipped with --skip-training).</p>{% endif %}

<h2 id="review">To review</h2>
<p>Grader errors (points kept until reviewed), undecided checks (0 for now), flagged failures, and models judged in the sandbox (<code>method: sandbox</code>) rather than by the judge.</p>
{% if review %}<table id="review-table"><tr><th>submission</th><th>check</th><th>status</th><th>method</th><th>why</th></tr>
{% for r in review %}<tr><td><a href="{{ r.link }}">{{ r.submission }}</a></td><td>{{ r.check_id }}</td>
<td class="status" style="color: {{ colours.get(r.status, '#222') }}">{{ r.status }}</td><td>{{ r.method }}</td><td class="text">{{ r.why }}</td></tr>
{% endfor %}</table>
{% else %}<p class="empty">Nothing to review.</p>{% endif %}

<h2 id="submissions">Submissions</h2>
<table id="submission-table"><tr><th>submission</th><th>score</th><th>failed checks</th><th>to review</th><th>notes</th></tr>
{% for s in submissions %}<tr><td><a class="feedback" href="{{ s.link }}">{{ s.name }}</a></td><td class="num">{{ s.score }}</td>
<td>{{ s.failed }}</td><td class="num">{{ s.review }}</td><td class="text">{{ s.notes }}</td></tr>
{% endfor %}</table>
</body>
</html>
"""


def render(runs: list[GradingRun], names: list[str], *, generated: str | None = None) -> str:
    """The whole page as a string."""
    runs = [run.cleaned() for run in runs]
    names = [clean_text(n) for n in names]
    assignment = runs[0].assignment if runs else "(no submissions)"
    scores = [run.score for run in runs]
    max_score = max((run.max_score for run in runs), default=0.0)

    titles: dict[str, str] = {}
    status_counts: dict[str, Counter[str]] = defaultdict(Counter)
    items: Counter[tuple[str, str, float]] = Counter()
    review: list[ReviewRow] = []
    for name, run in zip(names, runs):
        for r in run.results:
            titles.setdefault(r.check_id, r.title)
            status_counts[r.check_id][r.status] += 1
            for item in {(i.message, i.points) for i in r.items}:  # each submission once per item
                items[(r.check_id, *item)] += 1
            if r.needs_review or r.method == "sandbox":
                why = r.review or " ".join(r.feedback)  # a sandbox-judged result's feedback says so and why
                review.append(ReviewRow(name, _link(name), r.check_id, r.status, r.method or "", _cut(why)))
    check_rows = [{"id": cid, "title": titles[cid], "counts": status_counts[cid]} for cid in titles]
    mistakes = [{"check_id": cid, "message": msg, "points": f"{pts:+g}", "count": n}
                for (cid, msg, pts), n in sorted(items.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1]))]
    found = accuracies(runs, names)
    submissions = [{"name": name, "link": _link(name), "score": f"{run.score:g} / {run.max_score:g}",
                    "failed": ", ".join(r.check_id for r in run.results if r.status == "failed") or "-",
                    "review": len(run.to_review()), "notes": _cut(" | ".join(run.load_messages))}
                   for name, run in zip(names, runs)]
    env = Environment(autoescape=True)  # every {{ }} is HTML-escaped; the plots are Markup built from escaped text
    return env.from_string(TEMPLATE).render(
        assignment=assignment, n=len(runs), max_score=f"{max_score:g}",
        mean=f"{statistics.fmean(scores):.2f}" if scores else "-",
        median=f"{statistics.median(scores):g}" if scores else "-",
        n_review=len(review), generated=generated or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        histogram=score_histogram(scores, max_score),
        statuses=STATUSES, colours=STATUS_COLOURS, check_rows=check_rows,
        check_plot=stacked_bars([(r["id"], r["counts"]) for r in check_rows], "pass rate per check"),
        mistakes=mistakes,
        mistake_plot=count_bars([(f"{m['check_id']}: {m['message']}", m["count"]) for m in mistakes], "known mistakes"),
        accuracies=found, accuracy_plot=accuracy_plot(found) if found else "",
        review=review, submissions=submissions)


def write_report(runs: list[GradingRun], names: list[str], path: Path) -> Path:
    """Write the page (atomically: a half-written report never replaces a whole one)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render(runs, names), encoding="utf-8")
    tmp.replace(path)
    return path


def load_records(out: Path) -> tuple[list[str], list[GradingRun], list[str]]:
    """The records a batch left in `out` (one ``<name>/record.json`` each): names, runs, and what was unreadable."""
    names, runs, problems = [], [], []
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        record = folder / RECORD
        if not record.is_file():
            problems.append(f"{folder.name}: no {RECORD} (not graded yet, or graded before records were kept)")
            continue
        try:
            runs.append(GradingRun.from_dict(json.loads(record.read_text())))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            problems.append(f"{folder.name}: {RECORD} is unreadable ({type(exc).__name__})")
            continue
        names.append(folder.name)
    return names, runs, problems
