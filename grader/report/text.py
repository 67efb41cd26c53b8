"""Student-derived text made safe for a terminal or a report: the one function that does it.

A submission controls much of the text the grader shows: its source lines
(quoted in feedback and load messages), its exception messages, its answers
and its file names. Raw, that text could repaint the instructor's terminal
(``\\x1b[2J\\x1b[31mAll tests passed``), hide a line with a carriage return,
or reorder what a reader sees with Unicode bidi overrides (the "Trojan
Source" trick). `clean_text` removes all of these and puts a visible
``\\N{REPLACEMENT CHARACTER}`` where something was taken out, so a reviewer can
tell that the original held more than is shown.

Kept: newline and tab, and every printable character of any script.
Removed: ANSI/VT escape sequences (CSI, OSC, DCS and two-character ones,
whole), every other C0 control, DEL, every C1 control (including the
8-bit CSI U+009B), the bidi embeddings, overrides and isolates
U+202A-U+202E and U+2066-U+2069, and the bidi marks U+200E, U+200F, U+061C.

`GradingRun.cleaned` applies it to every string of a run; every reporter
starts from that copy.
"""
from __future__ import annotations

import re

MARK = "\N{REPLACEMENT CHARACTER}"

# ESC- and 8-bit-introduced sequences, matched whole so their parameters ("[2J") go too:
#   CSI: ESC [ or U+009B, parameter and intermediate bytes, one final byte;
#   OSC, DCS, SOS, PM, APC: ESC ] (or P X ^ _, or their 8-bit forms) up to BEL or ST (ESC \ or U+009C);
#   any other ESC followed by one character (e.g. ESC c, a full reset).
_SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b.?",
    re.DOTALL,
)
# What is left to remove one character at a time: C0 except \t and \n, DEL, C1, bidi controls.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean_text(text: str) -> str:
    """`text` without escape sequences, control characters (but newline and tab) or bidi controls."""
    if not isinstance(text, str):
        text = str(text)
    text = _SEQUENCES.sub(MARK, text)
    return _CONTROLS.sub(MARK, text)


def is_clean(text: str) -> bool:
    """Whether `text` has nothing `clean_text` would remove (for tests and assertions in reporters)."""
    return not _CONTROLS.search(text)
