"""Jupyter notebooks as Python source, read as Jupyter reads them: code cells only, IPython syntax set aside.

Which lines are IPython syntax (``%matplotlib inline``, ``!pip install x``,
``x?``, ``?x``, ``%timeit f()``, ``x = !ls``) is decided by IPython's own cell
transformer, `IPython.core.inputtransformer2.TransformerManager`, so that a
comment ending in ``?`` or a continuation line starting with ``!=`` or ``%``
stays the Python it is. Those lines are then replaced, one for one, by
``pass`` (indented as they were): magics and shell commands never run at load
(a ``pip install`` or a download has no business in grading, and a stub
``get_ipython()`` that silently did nothing would bind ``x = !ls`` to a value
Jupyter never gives), and keeping one line for one line keeps every line
number equal to the one the student sees in the cell. ``%time stmt`` keeps its
statement, and a ``%%time`` / ``%%capture`` cell its body, as Jupyter runs
them; other cell magics (``%%bash``, ``%%writefile``) are not Python and are
blanked.

Where IPython is not installed, a tokenizer-based reading of the same rules
is used (`_transform_without_ipython`); tests compare the two when both exist.
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

import nbformat

# Cell magics whose body is still ordinary Python that Jupyter runs: keep the body, set the magic aside.
PYTHON_BODY_CELL_MAGICS = {"time", "timeit", "capture", "prun"}

_RUN_TIME = re.compile(r"^(\s*)get_ipython\(\)\.run_line_magic\('time', (.*)\)\s*$")


@dataclass(frozen=True)
class CodeCell:
    index: int  # 1-based position among all cells, as Jupyter shows execution order varies
    source: str


def clean_cell(source: str) -> str:
    """One cell's source as Python, with the same number of lines; IPython-only lines become ``pass``."""
    lines = source.splitlines()
    lead = 0
    while lead < len(lines) and not lines[lead].strip():
        lead += 1  # IPython drops leading blank lines; they are kept here so line numbers stay
    head, body = lines[:lead], lines[lead:]
    if body and body[0].lstrip().startswith("%%"):
        magic = body[0].split()[0][2:]
        if magic in PYTHON_BODY_CELL_MAGICS:
            out = head + [""] + _transform(body[1:])
        else:
            out = [""] * len(lines)  # %%bash, %%writefile...: not Python at all
    else:
        out = head + _transform(body)
    return "\n".join(out) + "\n"


def _transform(lines: list[str]) -> list[str]:
    if not lines:
        return []
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return _transform_without_ipython(lines)
    return _transform_with_ipython(lines, TransformerManager())


def _transform_with_ipython(lines: list[str], manager: object) -> list[str]:
    cleaned = [line + "\n" for line in lines]
    # IPython's own clean-ups (a common indent, pasted >>> prompts) change lines
    # that are Python: apply them first so only IPython syntax differs below.
    for cleanup in manager.cleanup_transforms:  # type: ignore[attr-defined]
        if getattr(cleanup, "__name__", "") != "leading_empty_lines":
            cleaned = cleanup(cleaned)
    try:
        transformed = manager.transform_cell("".join(cleaned)).splitlines()  # type: ignore[attr-defined]
    except Exception:  # IPython gave up on this cell (it raises several types): read it with the tokenizer rules
        return _transform_without_ipython(lines)
    cleaned = [line.rstrip("\n") for line in cleaned]
    if len(transformed) != len(cleaned):
        # A magic continued over several lines with a backslash became one line:
        # line numbers could not be kept, so read this cell with the tokenizer rules.
        return _transform_without_ipython(lines)
    return [old if old == new else _replacement(new) for old, new in zip(cleaned, transformed)]


def _replacement(transformed: str) -> str:
    """What runs in place of one IPython line: ``%time stmt`` keeps its statement, anything else is ``pass``."""
    match = _RUN_TIME.match(transformed)
    if match:
        try:
            statement = ast.literal_eval(match.group(2))
        except (ValueError, SyntaxError):
            statement = None
        if isinstance(statement, str) and "\n" not in statement and _is_python(statement):
            return match.group(1) + statement
    indent = transformed[: len(transformed) - len(transformed.lstrip())]
    return indent + "pass"


def _is_python(text: str) -> bool:
    try:
        ast.parse(text)
        return True
    except (SyntaxError, ValueError):
        return False


# --- without IPython ------------------------------------------------------------------------

_SKIP = {tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT, tokenize.ENDMARKER}
_ASSIGN_ESCAPE = re.compile(r"^\s*[A-Za-z_][\w\s,]*=\s*[!%]")


def _scan(lines: list[str]) -> tuple[list[bool], set[int], int]:
    """Which lines start a logical line (not inside brackets, a string or a backslash continuation),
    which logical lines end in a help ``?`` (by their first line), and how far tokenizing got."""
    starts = [False] * len(lines)
    help_lines: set[int] = set()
    fresh, depth, first, last = True, 0, -1, None
    reached = len(lines)
    try:
        for tok in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
            row = tok.start[0] - 1
            if tok.type == tokenize.NEWLINE or (tok.type == tokenize.NL and depth == 0):
                if last is not None and last.type == tokenize.ERRORTOKEN and last.string == "?" and first >= 0:
                    help_lines.add(first)
                fresh, depth, last = True, 0, None
                continue
            if tok.type in _SKIP or (tok.type == tokenize.ERRORTOKEN and tok.string.isspace()):
                continue
            if fresh and row < len(lines):
                starts[row], first, fresh = True, row, False
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}":
                depth = max(depth - 1, 0)
            last = tok
    except (tokenize.TokenError, SyntaxError) as exc:  # IndentationError is a SyntaxError
        lineno = getattr(exc, "lineno", None) or (exc.args[1][0] if len(exc.args) > 1 else 1)
        reached = max(int(lineno) - 1, 0)
    return starts, help_lines, reached


def _transform_without_ipython(lines: list[str]) -> list[str]:
    """IPython's rules by tokenizing: ``%``/``!``/``?`` at the start of a logical line, ``x?`` at its end,
    ``x = !cmd`` / ``x = %magic``. Lines are replaced one at a time and the cell is re-read after each,
    as IPython does, because what follows IPython syntax may not tokenize as Python."""
    out = list(lines)
    done: set[int] = set()
    for _ in range(len(lines) + 1):
        starts, help_lines, reached = _scan(out)
        found = None
        for i, line in enumerate(out):
            if i in done:
                continue
            stripped = line.lstrip()
            at_start = starts[i] if i < reached else bool(stripped) and not stripped.startswith("#")
            if at_start and (stripped.startswith(("%", "!", "?")) or i in help_lines or _ASSIGN_ESCAPE.match(line)):
                found = i
                break
        if found is None:
            return out
        line = out[found]
        out[found] = line[: len(line) - len(line.lstrip())] + "pass"
        done.add(found)
        if line.lstrip().startswith("%time ") and _is_python(line.lstrip()[6:]):
            out[found] = line[: len(line) - len(line.lstrip())] + line.lstrip()[6:]
        elif found in help_lines:
            # A help query over several lines (``f(a,\n b)?``): its other lines go too.
            j = found + 1
            while j < len(out) and j < reached and not starts[j]:
                out[j], j = "", j + 1
                done.add(j - 1)
    return out


def read_code_cells(path: Path) -> list[CodeCell]:
    nb = nbformat.read(str(path), as_version=4)
    cells = []
    for i, cell in enumerate(nb.cells, start=1):
        if cell.cell_type == "code":
            cells.append(CodeCell(index=i, source=clean_cell(cell.source)))
    return cells
