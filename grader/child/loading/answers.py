"""Student answers as data: answers.yaml, or a notebook cell ``ANSWERS = {...}``.

Nothing here runs student code: YAML is read with PyYAML's safe constructors
and the notebook dict is walked as an AST of literals. Nested mappings are
flattened to dotted keys (``q4: {c1: 156}`` becomes ``q4.c1``), the ids the
rubric uses.

Both are bounded: file size, nesting depth, number of nodes (aliases counted
as often as they are expanded, so a "billion laughs" file is refused before
it is built) and digits of an integer. A structurally unreadable file gives
one `AnswersError` naming the line; a bad *value* (an integer of 5,000
digits, an impossible date) costs only its own answer, which becomes a
sentence naming the key and the line instead of a number.
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path
from typing import Any

import yaml

MAX_ANSWERS_BYTES = 1 << 20
MAX_DEPTH = 32  # nesting of mappings and lists
MAX_NODES = 50_000  # values in the file, aliases counted once per use
MAX_INT_DIGITS = 400  # far below Python's 4,300 (whose ValueError ended the whole file); no answer needs more
Scalar = str | int | float | bool | None


class AnswersError(ValueError):
    """The answers file cannot be read; the message says why and where."""


class Unreadable:
    """A value that could not be read; becomes a sentence naming its key and line once flattened."""

    def __init__(self, line: int, why: str) -> None:
        self.line, self.why = line, why

    def __str__(self) -> str:
        return f"(unreadable at line {self.line}: {self.why})"

    def sentence(self, key: str) -> str:
        return f"(unreadable answer for '{key}' at line {self.line}: {self.why})"


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                out.update(flatten(value, name))
            else:
                out[name] = _plain(value, name)
    return out


def _plain(value: Any, name: str) -> Any:
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, Unreadable):
        return value.sentence(name)
    if isinstance(value, (list, tuple)):
        return [_plain(v, name) for v in value]
    # YAML may produce dates and the like: keep their text so the check can still explain.
    return str(value)


# --- answers.yaml ------------------------------------------------------------------------------------------------

try:  # libyaml's parser, when PyYAML has it: events come from C (several times faster), composed in Python below
    from yaml._yaml import CParser as _CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _CParser = None

if _CParser is not None:
    class _SafeBase(yaml.composer.Composer, _CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        """CSafeLoader, but composed by PyYAML's Python Composer (libyaml's own composer cannot be bounded)."""

        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            yaml.composer.Composer.__init__(self)
else:  # pragma: no cover
    _SafeBase = yaml.SafeLoader


class _BoundedLoader(_SafeBase):
    """PyYAML's safe loader, composed in Python so that depth, node count and values can be bounded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        line = self.peek_event().start_mark.line + 1
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise AnswersError(f"more than {MAX_NODES:,} values (at line {line}); an answers file needs far fewer")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise AnswersError(f"lists or mappings nested more than {MAX_DEPTH} deep at line {line}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _int_or_unreadable(loader: _BoundedLoader, node: yaml.ScalarNode) -> Any:
    digits = sum(c.isalnum() for c in node.value) if isinstance(node, yaml.ScalarNode) else 0
    if digits > MAX_INT_DIGITS:
        return Unreadable(node.start_mark.line + 1, f"a number of {digits:,} digits; at most {MAX_INT_DIGITS} are read")
    return _scalar_or_unreadable(loader, node, yaml.SafeLoader.construct_yaml_int)


def _scalar_or_unreadable(loader: _BoundedLoader, node: yaml.ScalarNode, construct: Any) -> Any:
    try:
        return construct(loader, node)
    except (ValueError, OverflowError, TypeError, yaml.constructor.ConstructorError) as exc:
        return Unreadable(node.start_mark.line + 1, f"{node.value[:40]!r} cannot be read ({exc})"[:200])


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _int_or_unreadable)
for _tag, _construct in [("float", yaml.SafeLoader.construct_yaml_float),
                         ("timestamp", yaml.SafeLoader.construct_yaml_timestamp),
                         ("binary", yaml.SafeLoader.construct_yaml_binary)]:
    _BoundedLoader.add_constructor(f"tag:yaml.org,2002:{_tag}",
                                   lambda loader, node, c=_construct: _scalar_or_unreadable(loader, node, c))


def _expanded_size(node: yaml.Node, sizes: dict[int, int], visiting: set[int]) -> int:
    """Nodes in `node` with every alias expanded (what flattening and sending it would build)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in visiting:
        raise AnswersError(f"an alias at line {node.start_mark.line + 1} refers to a value that contains it")
    visiting.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        total += _expanded_size(child, sizes, visiting)
        if total > MAX_NODES:
            raise AnswersError(f"aliases (*name) at line {node.start_mark.line + 1} expand to more than "
                               f"{MAX_NODES:,} values; write the values out instead")
    visiting.discard(key)
    sizes[key] = total
    return total


def read_answers_yaml(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    if len(raw) > MAX_ANSWERS_BYTES:
        raise AnswersError(f"{path.name} is {len(raw)} bytes; answers files are limited to {MAX_ANSWERS_BYTES} bytes")
    loader = _BoundedLoader(raw.decode("utf-8", errors="replace"))
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        _expanded_size(node, {}, set())
        data = loader.construct_document(node)
    except AnswersError as exc:
        raise AnswersError(f"{path.name} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise AnswersError(f"{path.name} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:  # cannot happen below MAX_DEPTH; never an internal error
        raise AnswersError(f"{path.name} cannot be read: it nests too deeply") from None
    finally:
        loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AnswersError(f"{path.name} must be a mapping of question ids to answers (e.g. 'q2: 0.013'), not a {type(data).__name__}")
    return flatten(data)


# --- the ANSWERS = {...} notebook cell ---------------------------------------------------------------------------

_BIG_NUMBER = "__answers_number_too_long_{}__"


def _without_long_numbers(source: str) -> tuple[str, dict[str, Unreadable]]:
    """The source with each over-long number literal replaced by a placeholder name (never run, only parsed).

    Python refuses to parse an integer literal of more than 4,300 digits, so
    one such answer would make the whole cell unreadable; a placeholder
    keeps the other answers.
    """
    if not re.search(r"\w{%d}" % (MAX_INT_DIGITS + 1), source):
        return source, {}  # nothing that long: no need to tokenize
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    found: dict[str, Unreadable] = {}
    out = []
    for tok in tokens:
        digits = sum(c.isalnum() for c in tok.string) if tok.type == tokenize.NUMBER else 0
        if digits > MAX_INT_DIGITS:
            name = _BIG_NUMBER.format(len(found))
            found[name] = Unreadable(tok.start[0], f"a number of {digits:,} digits; at most {MAX_INT_DIGITS} are read")
            tok = tok._replace(string=name)  # shorter than the literal: untokenize keeps the layout
        out.append(tok)
    return (tokenize.untokenize(out) if found else source), found


def _literal(node: ast.AST, placeholders: dict[str, Unreadable], depth: int, budget: list[int]) -> Any:
    """ast.literal_eval's subset (and placeholders), with bounded depth and node count."""
    budget[0] -= 1
    if budget[0] < 0:
        raise AnswersError(f"line {node.lineno}: ANSWERS holds more than {MAX_NODES:,} values")
    if depth > MAX_DEPTH:
        raise AnswersError(f"line {node.lineno}: ANSWERS nests more than {MAX_DEPTH} levels deep")
    if isinstance(node, ast.Name) and node.id in placeholders:
        return placeholders[node.id]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise AnswersError(f"line {node.lineno}: ANSWERS must be a plain dict of literals (strings and numbers)")
        return {_literal(k, placeholders, depth + 1, budget): _literal(v, placeholders, depth + 1, budget)
                for k, v in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, placeholders, depth + 1, budget) for e in node.elts]
    try:
        return ast.literal_eval(node)  # a constant, a signed number, a complex: small by now
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise AnswersError(f"line {getattr(node, 'lineno', '?')}: ANSWERS must be a plain dict of literals "
                           "(strings and numbers)") from None


def answers_from_cells(sources: list[str]) -> dict[str, Any] | None:
    """The last ``ANSWERS = {...}`` literal found in notebook cells, or None."""
    found = None
    for source in sources:
        if "ANSWERS" not in source or len(source) > MAX_ANSWERS_BYTES:
            continue
        try:
            source, placeholders = _without_long_numbers(source)
            tree = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError, tokenize.TokenError, IndentationError):
            continue
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "ANSWERS" for t in stmt.targets):
                try:
                    value = _literal(stmt.value, placeholders, 0, [MAX_NODES])
                except RecursionError:
                    raise AnswersError(f"line {stmt.lineno}: ANSWERS nests too deeply") from None
                if isinstance(value, dict):
                    found = flatten(value)
    return found
