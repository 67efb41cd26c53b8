"""``grader rubric kinds``: the check kinds and their options, from the kinds' own declarations.

Nothing here is written by hand per kind: the listing is `Check.options`
(grader.checks.options), the same records the rubric schema is built from.
"""
from __future__ import annotations

from typing import Any, Mapping


def describe_kind(cls: Any) -> str:
    """One kind: its summary line, then one line per option (name, type, default, doc)."""
    doc = (cls.__doc__ or "").strip().splitlines() or [""]
    module_doc = (__import__(cls.__module__, fromlist=["_"]).__doc__ or "").strip().splitlines() or [""]
    summary = module_doc[0].split(": ", 1)[-1] if module_doc[0] else doc[0]
    lines = [f"{cls.kind}: {summary}"]
    if getattr(cls, "options", None) is None:
        lines.append("  (options not declared: params are passed as written)")
        return "\n".join(lines)
    if not cls.options:
        lines.append("  (no options)")
    width = max((len(o.name) for o in cls.options), default=0)
    type_width = min(28, max((len(o.type_text()) for o in cls.options), default=0))
    for o in cls.options:
        lines.append(f"  {o.name:<{width}}  {o.type_text():<{type_width}}  ({o.default_text()})  {o.doc}")
    lines.append(f"  findings: {', '.join(cls.findings)}")
    return "\n".join(lines)


def describe_kinds(registry: Mapping[str, Any], only: list[str] | None = None) -> str:
    names = sorted(registry) if not only else only
    return "\n\n".join(describe_kind(registry[n]) for n in names)
