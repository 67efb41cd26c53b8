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


# --- typed check options (grader.checks.options) ------------------------------------------------


def test_an_option_of_the_wrong_type_is_named_with_file_and_path(tmp_path):
    """Issue 10: `epochs: five` used to crash `grader rubric validate` with a traceback."""
    def edit(d):
        d["questions"][4]["checks"][3]["params"]["epochs"] = "five"  # p5.train, kind training
    path = _write_variant(tmp_path, edit)
    text = _errors(path)
    assert f"{path}: at questions[4].checks[3].params.epochs: 'five' is not a number" in text, text


def test_every_bad_option_is_reported_at_once_with_did_you_mean(tmp_path):
    def edit(d):
        d["questions"][0]["checks"][0]["params"]["repeats"] = 0            # conv_filter: integer >= 1
        d["questions"][0]["checks"][0]["params"]["weight_shap"] = [2, 1]    # misspelt
        d["questions"][4]["checks"][3]["params"]["epoch"] = 3               # training: misspelt
        d["questions"][6]["checks"][0]["params"]["input"] = "2x6x14x14"      # connectivity: a list
    text = _errors(_write_variant(tmp_path, edit))
    lines = text.splitlines()
    assert len(lines) == 4, text
    assert "questions[0].checks[0].params.repeats: 0 is less than the minimum of 1" in lines[0], text
    assert "questions[0].checks[0].params.weight_shap: check kind conv_filter has no option 'weight_shap' " \
           "(did you mean 'weight_shape'?)" in lines[1], text
    assert "questions[4].checks[3].params.epoch: check kind training has no option 'epoch' (did you mean 'epochs'?)" \
           in lines[2], text
    assert "questions[6].checks[0].params.input: '2x6x14x14' is not a list" in lines[3], text


def test_the_command_line_names_the_bad_option_and_exits_3(tmp_path, capsys):
    from grader.cli import main

    path = _write_variant(tmp_path, lambda d: d["questions"][1]["checks"][0]["params"].update(rtol="tight"))
    assert main(["rubric", "validate", str(path)]) == 3
    err = capsys.readouterr().err
    assert "questions[1].checks[0].params.rtol: 'tight' is not a number" in err and "Traceback" not in err, err


def test_every_built_in_kind_declares_its_options_with_one_line_of_doc():
    from grader.checks import REGISTRY

    for kind, cls in REGISTRY.items():
        if cls.__module__.startswith("grader.checks."):
            assert cls.options is not None, f"{kind} declares no options"
            names = [o.name for o in cls.options]
            assert len(names) == len(set(names)), kind
            for o in cls.options:
                assert o.doc and "\n" not in o.doc, (kind, o.name)


def test_defaults_come_from_the_declaration():
    from grader.checks import REGISTRY
    from grader.rubric.model import CheckSpec

    spec = CheckSpec(id="x", kind="tensor_function", question="x", title="x", points=1, target="f", reference="f",
                     params={"args": [], "rtol": 0.5})
    check = REGISTRY["tensor_function"](spec)
    declared = {o.name: o.default for o in REGISTRY["tensor_function"].options}
    assert check.params["rtol"] == 0.5 and check.params["atol"] == declared["atol"] == 1e-6
    assert check.params["select"] is None and check.params.given("rtol") and not check.params.given("atol")
    with pytest.raises(KeyError, match="declares no option 'rtoll'"):
        check.params["rtoll"]
    # The training kinds share the budget option the train engineer's speed check reads.
    for kind in ("training", "training_loop"):
        assert {o.name: o.default for o in REGISTRY[kind].options}["max_slowdown"] == 20


def test_rubric_kinds_lists_every_kind_and_option_from_the_declarations(capsys):
    from grader.checks import REGISTRY
    from grader.cli import main

    assert main(["rubric", "kinds"]) == 0
    out = capsys.readouterr().out
    for kind, cls in REGISTRY.items():
        assert f"{kind}: " in out, kind
        for o in cls.options or ():
            assert f"  {o.name} " in out and o.doc in out, (kind, o.name)
    assert "repeats       integer >= 1            (default 2)  random inputs drawn per case" in out, out
    assert main(["rubric", "kinds", "conv_filtr"]) == 2
    assert "did you mean 'conv_filter'?" in capsys.readouterr().err
