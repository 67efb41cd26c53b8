"""The rubric's JSON Schema: the file in grader/schemas plus each check kind's declared options.

`grader/schemas/rubric.schema.json` types everything but ``params``; each
kind's ``params`` come from its `Option` declarations (grader.checks.options),
added here as ``if kind == K then params: ...`` clauses, so a kind added by a
course is typed exactly like a built-in one. Names a kind does not declare are
reported separately (`unknown_option_errors`) with a "did you mean".
"""
from __future__ import annotations

import json
from importlib import resources
from typing import Any, Mapping



def base_schema() -> dict[str, Any]:
    return json.loads(resources.files("grader").joinpath("schemas/rubric.schema.json").read_text())


def rubric_schema(registry: Mapping[str, Any]) -> dict[str, Any]:
    """The base schema with one typed ``params`` clause per registered kind that declares its options."""
    from grader.checks.options import kind_schema  # here: importing grader.checks imports torch (see engine.prestart)

    schema = base_schema()
    clauses = schema["$defs"]["check"].setdefault("allOf", [])
    for kind, cls in sorted(registry.items()):
        if getattr(cls, "options", None) is None:
            continue
        clauses.append({"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                        "then": {"properties": {"params": kind_schema(cls.options)}}})
    return schema


def message(error: Any) -> str:
    """jsonschema's message, in plainer words where it helps ('five' is not an integer)."""
    from grader.checks.options import type_phrase

    if error.validator == "type":
        return f"{error.instance!r} is not {type_phrase(error.validator_value)}"
    return str(error.message)


def unknown_option_errors(data: Any, registry: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """(path, problem, suggestion) for every ``params`` name its kind does not declare."""
    from grader.checks.options import unknown_options

    out: list[tuple[str, str, str | None]] = []
    questions = data.get("questions") if isinstance(data, dict) else None
    for qi, q in enumerate(questions if isinstance(questions, list) else []):
        checks = q.get("checks") if isinstance(q, dict) else None
        for ci, c in enumerate(checks if isinstance(checks, list) else []):
            if not isinstance(c, dict) or not isinstance(c.get("params"), dict):
                continue
            cls = registry.get(c.get("kind"))
            if cls is None or getattr(cls, "options", None) is None:
                continue
            for suffix, problem, suggestion in unknown_options(c["kind"], cls.options, c["params"]):
                out.append((f"questions[{qi}].checks[{ci}].{suffix}", problem, suggestion))
    return out
