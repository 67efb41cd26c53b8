"""The HTML class report (grader.report.html), rendered in headless Chromium.

Built from synthetic grading records (no grading: cheap), written the way the
batch writes them, then rebuilt with `grader report FOLDER` and loaded in
Debian's chromium through Playwright: it renders, each plot has a size and
marks in it, each feedback link resolves to an existing file, and hostile
submission names and feedback neither inject markup nor run script.
"""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from grader.cli import main
from grader.report import gradescope
from grader.report.html import REPORT, accuracies, render
from grader.results import AppliedItem, CheckResult, GradingRun

CHROMIUM = Path("/usr/bin/chromium")
XSS_NAME = "<svg onload=window.__xss=1><script>window.__xss=4"  # a folder name: no "/" possible
XSS_FEEDBACK = '<img src=x onerror="window.__xss=2"><script>window.__xss=3</script>'
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _result(check_id: str, status: str, score: float, max_score: float = 2.0, **kw) -> CheckResult:
    return CheckResult(check_id=check_id, title=f"title of {check_id}", question="p1", score=score,
                       max_score=max_score, status=status, **kw)  # type: ignore[arg-type]


def _train(accuracy: float, threshold: float) -> CheckResult:
    if accuracy >= threshold:
        line = f"Your model reached {accuracy:.1%} accuracy on 1,000 held-out mnist images after 2 epoch(s) in 3.0 s; needed {threshold:.1%}."
        return _result("p7_train", "passed", 4.0, 4.0, feedback=[line], method="judge")
    line = f"Your model reached {accuracy:.1%} accuracy on 1,000 held-out mnist images after 2 epoch(s) in 3.0 s: below the {threshold:.1%} needed."
    return _result("p7_train", "failed", 0.0, 4.0, feedback=[line], items=[AppliedItem("low_accuracy", -4.0, "Low accuracy")])


def synthetic_runs() -> tuple[list[str], list[GradingRun]]:
    wrong_sign = AppliedItem("wrong_sign", -1.0, "Sign error in the gradient")
    names, runs = [], []
    for i in range(6):
        results = [
            _result("p1_loss", "passed" if i % 3 else "failed", 2.0 if i % 3 else 1.0,
                    items=[] if i % 3 else [wrong_sign]),
            _result("p2_grad", "passed" if i < 4 else "grader_error", 2.0,
                    review=None if i < 4 else "grader error: ValueError: reference raised"),
            _train(0.80 + 0.03 * i, 0.88),
        ]
        names.append(f"student{i:02d}")
        runs.append(GradingRun(assignment="hw4", submission=f"subs/student{i:02d}", results=results, isolation="bubblewrap"))
    hostile = [_result("p1_loss", "failed", 0.0, feedback=[XSS_FEEDBACK], items=[AppliedItem("incorrect", -2.0, XSS_FEEDBACK)]),
               _result("p2_grad", "failed", 0.0, method="sandbox", feedback=[f"Judged in the sandbox: {XSS_FEEDBACK}"]),
               _result("p7_train", "undecided", 0.0, 4.0, review=XSS_FEEDBACK)]
    names.append(XSS_NAME)
    runs.append(GradingRun(assignment="hw4", submission=XSS_NAME, results=hostile, load_messages=[XSS_FEEDBACK]))
    return names, runs


@pytest.fixture(scope="module")
def grades(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A grades folder as `grader grade` leaves it (results.json + record.json per submission), report rebuilt by the CLI."""
    out = tmp_path_factory.mktemp("grades")
    names, runs = synthetic_runs()
    for name, run in zip(names, runs):
        (out / name).mkdir()
        gradescope.write_results(run, out / name / "results.json")
        (out / name / "record.json").write_text(json.dumps(run.to_dict()))
    (out / "late").mkdir()  # a folder without a record: skipped with a message, the rest still reported
    assert main(["report", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def page(grades: Path, tmp_path_factory: pytest.TempPathFactory):
    # Fails rather than skips: a report nobody rendered is not a tested report (make test installs chromium).
    assert CHROMIUM.exists(), "Debian's chromium is not installed: run `make test` (scripts/test-tools.sh) or apt-get install chromium"
    from playwright import sync_api
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(str(profile), executable_path=str(CHROMIUM), args=ARGS,
                                                       headless=True, viewport={"width": 1100, "height": 900})
        tab = browser.new_page()
        dialogs: list[str] = []
        tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        tab.goto((grades / REPORT).as_uri())
        tab.wait_for_load_state("load")
        tab.screenshot(path=str(grades / "report.png"), full_page=True)
        yield tab, dialogs
        browser.close()


def test_accuracies_read_back_from_training_feedback() -> None:
    names, runs = synthetic_runs()
    found = accuracies(runs, names)
    assert [round(a.accuracy, 3) for a in found] == [round(0.80 + 0.03 * i, 3) for i in range(6)]
    assert {a.threshold for a in found} == {0.88}
    assert [a.passed for a in found] == [0.80 + 0.03 * i >= 0.88 for i in range(6)]


def test_page_counts_match_the_records() -> None:
    names, runs = synthetic_runs()
    html = render(runs, names, generated="now")
    assert "7 submission(s)" in html
    assert "Sign error in the gradient" in html
    # the hostile text is present, escaped: never as markup
    assert "<script>" not in html.split("</style>", 1)[1]
    assert "&lt;svg onload=window.__xss=1&gt;&lt;script&gt;window.__xss=4" in html
    assert "&lt;script&gt;window.__xss=3&lt;/script&gt;" in html


def test_report_renders_with_its_plots(page) -> None:
    tab, _ = page
    assert tab.title() == "Class report: hw4"
    plots = tab.locator("svg.plot")
    assert plots.count() == 4  # scores, pass rates, mistakes, accuracies
    for i in range(plots.count()):
        box = plots.nth(i).bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50
        marks = plots.nth(i).locator("rect.bar, circle.dot")
        assert marks.count() > 0
        assert any((marks.nth(j).bounding_box() or {}).get("width", 0) > 0 for j in range(marks.count()))
    # one threshold line, and every submission with an accuracy has its dot
    assert tab.locator("svg.plot line.threshold").count() == 1
    assert tab.locator("svg.plot circle.dot").count() == 6
    rows = tab.locator("#check-table tr")
    assert rows.count() == 1 + 3
    assert "grader_error" in tab.locator("#review-table").inner_text()
    assert "sandbox" in tab.locator("#review-table").inner_text()


def test_feedback_links_resolve_to_existing_files(page, grades: Path) -> None:
    tab, _ = page
    links = tab.locator("a.feedback")
    assert links.count() == 7
    for i in range(links.count()):
        href = links.nth(i).evaluate("a => a.href")
        target = Path(unquote(urlparse(href).path))
        assert target.is_file(), href
        assert target.parent.parent == grades
        assert json.loads(target.read_text())["tests"]


def test_hostile_names_and_feedback_do_not_run(page) -> None:
    tab, dialogs = page
    assert tab.evaluate("window.__xss") is None
    assert dialogs == []
    assert tab.locator("script").count() == 0
    assert tab.locator("[onerror], [onload]").count() == 0
    assert tab.locator("img").count() == 0
    text = tab.locator("body").inner_text()
    assert XSS_NAME in text and 'onerror="window.__xss=2"' in text  # shown as text, as the student wrote it


def test_report_command_needs_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "alice").mkdir()
    assert main(["report", str(tmp_path)]) == 2
    assert "no grading records" in capsys.readouterr().err


def test_screenshot_written(page, grades: Path) -> None:
    shot = grades / "report.png"
    assert shot.stat().st_size > 10_000
