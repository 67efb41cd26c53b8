"""Finding a student's answer by key (``q5.dg_dxi``), and saying where it should have been.

Answers come from ``answers.yaml`` or from a notebook cell ``ANSWERS = {...}``
(read as data in the sandbox, flattened to dotted keys). Not a check kind:
the expression and numeric kinds share it.
"""
from __future__ import annotations

import difflib
from typing import Any

from grader.checks.base import Context, Outcome


def where_answers_go(ctx: Context) -> str:
    """'answers.yaml (or the ANSWERS = {...} cell of a2.ipynb)', from the rubric's file names."""
    files = ctx.rubric.answer_files[:1] or ["answers.yaml"]
    notebooks = [f for f in ctx.rubric.code_files if f.endswith(".ipynb")]
    return files[0] + (f" (or the ANSWERS = {{...}} cell of {notebooks[0]})" if notebooks else "")


def _yaml_hint(key: str) -> str:
    if "." not in key:
        return f"'{key}: ...'"
    head, tail = key.split(".", 1)
    return f"'{head}: {{{tail}: ...}}'"


def lookup_answer(ctx: Context, key: str) -> tuple[Any, Outcome | None]:
    """(the answer, None), or (None, an Outcome saying it is missing and where to put it)."""
    answers = ctx.answers or {}
    if key in answers and answers[key] is not None:
        return answers[key], None
    load = ctx.load
    if load is not None and load.answers_error:
        return None, Outcome.fail("missing", f"Your answers could not be read, so '{key}' has no answer: {load.answers_error}")
    if load is None or load.answers is None:
        message = (f"No answers were found: put the answer to '{key}' in {where_answers_go(ctx)}, "
                   f"written as {_yaml_hint(key)}.")
        # Only a cell that cannot be parsed can hide an ANSWERS cell; an import error elsewhere cannot.
        unreadable = [e for e in (load.errors if load else []) if ".ipynb cell" in e and "syntax error" in e]
        if unreadable:
            message += f" (A notebook cell could not be read, so an ANSWERS cell there was not seen: {unreadable[0]})"
        return None, Outcome.fail("missing", message)
    message = f"No answer for '{key}' in {where_answers_go(ctx)}: add it, written as {_yaml_hint(key)}."
    if key in answers:
        message = f"The answer for '{key}' in {where_answers_go(ctx)} is empty: write your answer after the colon."
    head = key.split(".", 1)[0]
    if head != key and head in answers:
        message += f" (There is an answer under '{head}' alone: nest it as {_yaml_hint(key)}.)"
    else:
        # Only keys no check asks for can be typos of this one ('q6.tanh' is no misspelt 'q6.dtanh').
        wanted = {c.target for c in ctx.rubric.checks}
        close = difflib.get_close_matches(key, [k for k in answers if isinstance(k, str) and k not in wanted], n=1, cutoff=0.75)
        if close:
            message += f" You have an answer under '{close[0]}': did you mean '{key}'?"
    return None, Outcome.fail("missing", message)
