"""Rubric loading: schema errors with their path, meaning checks with suggestions."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from grader.errors import RubricErrors
from grader.rubric.load import load_rubric


def _write_variant(tmp_path: Path, edit) -> Path:
    """A copy of the hw4 rubric, edited, placed so that reference/ resolves as for the real one."""
    data = yaml.safe_load((ROOT / "rubrics" / "hw4.yaml").read_text())
    edit(data)
    rubrics = tmp_path / "rubrics"
    rubrics.mkdir(exist_ok=True)
    (tmp_path / "reference").symlink_to(ROOT / "reference") if not (tmp_path / "reference").exists() else None
    path = rubrics / "hw4.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _errors(path: Path) -> str:
    with pytest.raises(RubricErrors) as info:
        load_rubric(path)
    return str(info.value)


def test_the_shipped_rubric_is_valid():
    rubric = load_rubric(ROOT / "rubrics" / "hw4.yaml")
    assert rubric.total_points == 100 and len(rubric.checks) == 18
    assert sum(c.points for c in rubric.checks if c.training) == 10  # p5.train, p7.train: skipped by --skip-training


def test_unknown_kind_gets_a_suggestion(tmp_path):
    path = _write_variant(tmp_path, lambda d: d["questions"][0]["checks"][0].update(kind="conv_filtr"))
    text = _errors(path)
    assert "questions[0].checks[0].kind" in text and "did you mean 'conv_filter'" in text


def test_unknown_reference_symbol_gets_a_suggestion(tmp_path):
    path = _write_variant(tmp_path, lambda d: d["questions"][1]["checks"][0].update(reference="avgpool_as_con"))
    text = _errors(path)
    assert "has no 'avgpool_as_con'" in text and "did you mean 'avgpool_as_conv'" in text


def test_points_that_do_not_add_up_are_reported(tmp_path):
    path = _write_variant(tmp_path, lambda d: d["questions"][0].update(points=12))
    assert "question p1 is worth 12 points but its checks add up to 10" in _errors(path)


def test_schema_errors_name_the_path(tmp_path):
    path = _write_variant(tmp_path, lambda d: d["questions"][2]["checks"][0].update(visibility="secret"))
    text = _errors(path)
    assert "questions[2].checks[0].visibility" in text and "'secret' is not one of" in text


def test_unknown_finding_in_a_rubric_item(tmp_path):
    def edit(d):
        d["questions"][0]["checks"][0]["rubric_items"] = [{"finding": "incorect", "points": -2, "message": "x"}]
    text = _errors(_write_variant(tmp_path, edit))
    assert "never reports 'incorect'" in text and "did you mean 'incorrect'" in text


def test_all_problems_are_reported_at_once(tmp_path):
    def edit(d):
        d["questions"][0]["checks"][0]["kind"] = "nope"
        d["questions"][1]["points"] = 1
    text = _errors(_write_variant(tmp_path, edit))
    assert "unknown check kind 'nope'" in text and "question p2 is worth 1 points" in text


def test_wrong_schema_version_names_both_versions(tmp_path):
    text = _errors(_write_variant(tmp_path, lambda d: d.update(schema_version=2)))
    assert "schema_version 1" in text and "2" in text


def test_bad_yaml_says_where(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("schema_version: 1\nquestions: [\n")
    assert "not valid YAML" in _errors(path)
