"""Typed check options: each check kind declares its ``params`` once, here is what a declaration is.

A kind lists its options as `Option` records (name, JSON Schema fragment for
the value, default, one line of documentation). From that one declaration:

- the rubric schema gets a typed ``params`` per ``kind`` (`kind_schema`), so
  ``grader rubric validate`` names every badly typed option with its path;
- names a kind does not declare are reported with a "did you mean"
  (`unknown_options`);
- a check reads its options from `resolve`, which fills in the declared
  defaults: no ``params.get(name, default)`` spread over the check code;
- ``grader rubric kinds`` and the handouts describe the options from it.

Defaults live only in the declarations. `REQUIRED` marks an option the rubric
must give; `UNSET` one that is off unless given (it then reads as ``None``).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


REQUIRED = _Marker("REQUIRED")  # the rubric must give it
UNSET = _Marker("UNSET")  # off unless given; reads as None


@dataclass(frozen=True)
class Option:
    """One entry of a check kind's ``params``."""

    name: str
    schema: Mapping[str, Any]  # JSON Schema fragment for the value
    doc: str  # one line, for instructors
    default: Any = UNSET

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def default_text(self) -> str:
        if self.default is REQUIRED:
            return "required"
        if self.default is UNSET:
            return "optional"
        return f"default {self.default!r}"

    def type_text(self) -> str:
        return schema_type_text(self.schema)


# --- a few shared value schemas ------------------------------------------------------------------

NUMBER = {"type": "number"}
NONNEG = {"type": "number", "minimum": 0}
POSITIVE = {"type": "number", "exclusiveMinimum": 0}
INT = {"type": "integer"}
POS_INT = {"type": "integer", "minimum": 1}
BOOL = {"type": "boolean"}
STRING = {"type": "string"}
NAME = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
MAPPING = {"type": "object"}
CASES = {"type": "array", "items": {"type": "object"}, "minItems": 1}
DIMS = {"type": "array", "items": {"type": ["integer", "string"]}, "minItems": 1}
SHAPE = {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1}
INDICES = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}
ARG_SPECS = {"type": "array", "items": {"type": "object"}}
ACCEPT = {"$ref": "#/$defs/accept"}
ARRAY_API = {"$ref": "#/$defs/array_api"}
INIT = {"type": "object", "description": "keyword arguments of the constructor"}


FORM_OPTIONS = ("accept", "array_api")


def accept_option(forms: Iterable[str]) -> Option:
    return Option("accept", ACCEPT, f"equivalent forms recognised and credited ({', '.join(forms)})")


def array_api_option() -> Option:
    return Option("array_api", ARRAY_API, "array libraries the function may be called with, torch first", ["torch"])


class Params(Mapping[str, Any]):
    """A check's options with the declared defaults filled in; reading an undeclared name is a grader bug."""

    def __init__(self, kind: str, values: dict[str, Any], given: frozenset[str]) -> None:
        self._kind, self._values, self._given = kind, values, given

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(f"check kind {self._kind} declares no option {name!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def given(self, name: str) -> bool:
        """Whether the rubric wrote this option (rather than it taking its default)."""
        return name in self._given

    def as_dict(self) -> dict[str, Any]:
        """The options as a plain dict: for code shared with the training harness that takes a mapping."""
        return dict(self._values)

    def __repr__(self) -> str:
        return f"Params({self._kind}, {self._values!r})"


def resolve(kind: str, options: Iterable[Option], raw: Mapping[str, Any] | None) -> Params:
    """The declared options with the rubric's values over the defaults (REQUIRED ones absent read as None)."""
    raw = raw or {}
    values: dict[str, Any] = {}
    for opt in options:
        if opt.name in raw:
            values[opt.name] = raw[opt.name]
        else:
            values[opt.name] = None if opt.default in (REQUIRED, UNSET) else opt.default
    return Params(kind, values, frozenset(raw))


def unknown_options(kind: str, options: Iterable[Option], raw: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """(path suffix, problem, suggestion) for every params name the kind does not declare."""
    names = [o.name for o in options]
    out = []
    for name in raw:
        # accept / array_api on a kind without them get the sharper sentence of grader.checks.forms.validate_forms
        if name not in names and name not in FORM_OPTIONS:
            close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.6)
            listing = "" if close else f" (its options: {', '.join(sorted(names)) or 'none'})"
            out.append((f"params.{name}", f"check kind {kind} has no option {name!r}{listing}", close[0] if close else None))
    return out


def missing_required(kind: str, options: Iterable[Option], raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(f"params.{o.name}", f"a {kind} check needs params.{o.name} ({o.doc})")
            for o in options if o.required and o.name not in raw]


def kind_schema(options: Iterable[Option]) -> dict[str, Any]:
    """The JSON Schema of one kind's params (types only; unknown names are reported by `unknown_options`)."""
    props: dict[str, Any] = {}
    for o in options:
        props[o.name] = {**o.schema, "description": o.doc}
    return {"type": "object", "properties": props}


_NOUNS = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
          "array": "a list", "object": "a mapping", "null": "null"}


def type_phrase(types: str | list[str]) -> str:
    """'an integer', 'a number or null': the JSON Schema type(s) in words."""
    types = [types] if isinstance(types, str) else list(types)
    return " or ".join(_NOUNS.get(t, t) for t in types)


def schema_type_text(schema: Mapping[str, Any]) -> str:
    """A short type for listings: 'integer >= 1', 'list of string', 'mapping'."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return " | ".join(repr(v) for v in schema["enum"])
    if "oneOf" in schema or "anyOf" in schema:
        return " or ".join(schema_type_text(s) for s in schema.get("oneOf", schema.get("anyOf", [])))
    t = schema.get("type", "any")
    text = "/".join(t) if isinstance(t, list) else str(t)
    if text == "array" and isinstance(schema.get("items"), Mapping):
        text = f"list of {schema_type_text(schema['items'])}"
    if "minimum" in schema:
        text += f" >= {schema['minimum']}"
    if "exclusiveMinimum" in schema:
        text += f" > {schema['exclusiveMinimum']}"
    if "maximum" in schema:
        text += f" <= {schema['maximum']}"
    return text


def nested_defaults(options: Iterable[Option], name: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """A mapping option's value over the ``default`` of each property its declared schema lists."""
    opt = next(o for o in options if o.name == name)
    props = opt.schema.get("properties", {})
    return {**{k: s["default"] for k, s in props.items() if "default" in s}, **value}
