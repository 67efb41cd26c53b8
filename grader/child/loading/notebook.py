"""Jupyter notebooks as Python source: code cells only, IPython-only lines blanked.

Blanking (rather than deleting) magics and shell escapes keeps every line
number equal to the one the student sees in the cell, so errors point to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat

# Cell magics whose body is still ordinary Python: keep the body, blank the magic.
PYTHON_BODY_CELL_MAGICS = {"%%time", "%%timeit", "%%capture"}


@dataclass(frozen=True)
class CodeCell:
    index: int  # 1-based position among all cells, as Jupyter shows execution order varies
    source: str


def clean_cell(source: str) -> str:
    """Blank IPython magics (``%...``), shell escapes (``!...``) and help queries (``x?``)."""
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        magic = lines[0].split()[0]
        if magic not in PYTHON_BODY_CELL_MAGICS:
            return "\n" * len(lines)  # %%bash, %%writefile...: not Python at all
    out = []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")) or (stripped.endswith("?") and not stripped.startswith("#")):
            out.append("")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def read_code_cells(path: Path) -> list[CodeCell]:
    nb = nbformat.read(str(path), as_version=4)
    cells = []
    for i, cell in enumerate(nb.cells, start=1):
        if cell.cell_type == "code":
            cells.append(CodeCell(index=i, source=clean_cell(cell.source)))
    return cells
