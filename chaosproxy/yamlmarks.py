"""Where in a YAML document something is, and what is wrong there.

PyYAML's safe loader turns a document into plain dicts, lists and scalars and forgets
where each came from. A configuration error is only useful with its line, so
:func:`load_marked` also walks the composed node tree once and records, for each
path (the tuple of keys and indices that leads to a value, the same shape as a
pydantic error's ``loc``), the 1-based line of the key or item. The walk also finds
keys repeated within one mapping, which PyYAML would otherwise resolve silently by
keeping the last.

The second half words the errors found at those paths: :func:`describe_yaml_error`
for a document that does not parse, :func:`describe_validation_error` for one
pydantic error, both as "expected ..., got ..." in this project's own words.
"""

from __future__ import annotations

import difflib
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

__all__ = [
    "DuplicateKey",
    "LineLoader",
    "Loc",
    "MarkedDocument",
    "describe_validation_error",
    "describe_yaml_error",
    "did_you_mean",
    "format_path",
    "load_marked",
    "show_value",
]

#: A path into a document: mapping keys and sequence indices, outermost first.
Loc = tuple[Hashable, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class DuplicateKey:
    """A key given twice in one mapping: where it is and where it first appeared."""

    loc: Loc
    line: int
    first_line: int


@dataclass
class MarkedDocument:
    """A loaded document with the line of every path in it."""

    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    duplicates: list[DuplicateKey] = field(default_factory=list)

    def line_of(self, loc: Loc) -> int | None:
        """Return the line of ``loc``, or of its nearest ancestor that exists.

        A missing key has no line of its own; the mapping that lacks it is the most
        useful place to point at. Returns None only for an empty document.
        """
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line

        return None

    def forget(self, loc: Loc) -> None:
        """Drop the lines recorded for ``loc`` and everything below it."""
        size = len(loc)
        for known in [k for k in self.lines if k[:size] == loc]:
            del self.lines[known]


class LineLoader(yaml.SafeLoader):
    """A safe loader that records the line of each mapping key and sequence item."""

    def load_marked(self) -> MarkedDocument | None:
        """Load the single document of the stream; None when the stream is empty.

        Raises ``yaml.YAMLError`` for a syntax error, several documents, or a value
        the safe constructor refuses.
        """
        node = self.get_single_node()
        if node is None:
            return None

        # Walk before constructing: construction flattens merge keys (<<) in place,
        # and an explicit key overriding a merged one is not a duplicate.
        document = MarkedDocument(data=None)
        document.lines[()] = node.start_mark.line + 1
        self._walk(node, (), document, set())
        document.data = self.construct_document(node)

        return document

    def _walk(
        self, node: yaml.Node, loc: Loc, document: MarkedDocument, walked: set[int]
    ) -> None:
        """Record the lines below ``node``, unless an alias already led here.

        Each node is walked once: aliases of aliases would otherwise make the walk
        exponential (a "billion laughs" file), and cycles endless. PyYAML gives an
        alias the node of its anchor, so a path below an alias points at the key
        that holds the alias or, for a list item, at the anchor.
        """
        if id(node) in walked:
            return
        walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._walk_mapping(node, loc, document, walked)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                document.lines[(*loc, index)] = item.start_mark.line + 1
                self._walk(item, (*loc, index), document, walked)

    def _walk_mapping(
        self,
        node: yaml.MappingNode,
        loc: Loc,
        document: MarkedDocument,
        walked: set[int],
    ) -> None:
        """Record the line of each key of one mapping and report repeated keys."""
        seen: dict[Hashable, int] = {}
        for key_node, value_node in node.value:
            # Only scalar keys can name a field; the constructor rejects the rest.
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            key_loc = (*loc, key)
            line = key_node.start_mark.line + 1
            if key in seen:
                document.duplicates.append(DuplicateKey(key_loc, line, seen[key]))
                # The last value is the one loaded, so its lines must be the ones
                # that errors point to.
                document.forget(key_loc)
            else:
                seen[key] = line
            document.lines[key_loc] = line
            self._walk(value_node, key_loc, document, walked)


def load_marked(text: str) -> MarkedDocument | None:
    """Parse ``text`` as one YAML document, keeping the line of every path.

    Returns None when the text holds no document at all (empty, or only comments).
    Raises ``yaml.YAMLError`` when the text is not valid YAML.
    """
    loader = LineLoader(text)
    try:
        return loader.load_marked()
    finally:
        loader.dispose()


def format_path(loc: Iterable[Hashable]) -> str:
    """Write a path as ``routes[2].faults[0].probability``; ``()`` gives ``""``."""
    text = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif part != "[key]":  # pydantic's marker for an error in a dict's key
            text += f".{part}" if text else str(part)

    return text


def show_value(value: object) -> str:
    """Show a value briefly, as YAML would write it: ``'abc'``, ``1.5``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _show_number(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"

    return f"a {type(value).__name__}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``; did you mean 'x'?`` suffix when a choice is close to ``word``, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def describe_yaml_error(exc: yaml.YAMLError) -> tuple[int | None, str]:
    """Return the 1-based line (None if unknown) and a message for a YAML error."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return None, f"invalid YAML: {exc}"

    line = exc.problem_mark.line + 1
    message = f"invalid YAML: {exc.problem or 'cannot be parsed'}"
    if exc.context:
        # An unclosed quote or bracket is found far from where it was opened.
        start = exc.context_mark.line + 1 if exc.context_mark else line
        at = "" if start == line else f" on line {start}"
        message += f" ({exc.context}{at})"

    return line, message


# What a value of each kind should have been, by pydantic error type.
_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "invalid_key": "a string key",
    "string_too_short": "a non-empty string",
}
# Fields whose values never appear in a message: messages reach logs and terminals.
_SECRET_FIELDS = frozenset({"admin_token"})
_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_BOUNDS = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}


def describe_validation_error(error: ErrorDetails, root: type[BaseModel]) -> str:
    """Word one pydantic error of validating ``root`` as "expected ..., got ...".

    The model tree below ``root`` supplies what the error itself lacks: both bounds
    of a range, the members of an enum, the known keys near an unknown one.
    """
    kind, loc, ctx = error["type"], error["loc"], error.get("ctx", {})
    holder, info = _field_at(root, loc)
    got = show_value(error["input"])
    if loc and loc[-1] in _SECRET_FIELDS and error["input"] != "":
        got = "a value that is not shown (it is a secret)"
    if kind == "missing":
        return "required field missing"
    if kind == "extra_forbidden":
        known = holder.model_fields if holder is not None else ()
        return f"unknown key {str(loc[-1])!r}" + did_you_mean(str(loc[-1]), known)
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    if kind in _BOUND_ERRORS:
        return f"expected {_describe_bounds(info, ctx)}, got {got}"
    if kind == "enum":
        members = _find_class(info.annotation if info else None, Enum)
        if members is not None:
            return (
                f"expected one of {', '.join(str(m.value) for m in members)}, got {got}"
            )
    if kind in ("enum", "literal_error"):
        return f"expected {ctx.get('expected', 'another value')}, got {got}"

    return f"expected {_EXPECTED.get(kind, 'another value')}, got {got}"


def _show_number(number: int | float) -> str:
    """``1`` for a whole float bound (pydantic stores ``le=1`` as 1.0), else repr."""
    if isinstance(number, float) and number.is_integer():
        return str(int(number))
    return repr(number)


def _describe_bounds(info: FieldInfo | None, ctx: dict[str, Any]) -> str:
    """Say which numbers a field takes: ``0 to 1``, ``more than 0``."""
    limits = dict(ctx)
    for item in info.metadata if info is not None else ():
        for name in _BOUNDS:
            if getattr(item, name, None) is not None:
                limits[name] = getattr(item, name)
    if "ge" in limits and "le" in limits:
        return f"{_show_number(limits['ge'])} to {_show_number(limits['le'])}"

    return " and ".join(
        f"{_BOUNDS[name]} {_show_number(limits[name])}"
        for name in _BOUNDS
        if name in limits
    )


def _field_at(
    root: type[BaseModel], loc: Iterable[Hashable]
) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """Find the model holding the last key of ``loc``, and that key's field.

    The field is None for a key the model does not know; both are None when the
    path leaves the models (into a dict of headers, say).
    """
    model: type[BaseModel] | None = root
    holder: type[BaseModel] | None = None
    info: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int):
            continue  # an index into a list keeps the list's item model
        if model is None:
            return None, None
        holder, info = model, model.model_fields.get(str(part))
        if info is None:
            return holder, None
        model = _find_class(info.annotation, BaseModel)

    return holder, info


_T = TypeVar("_T")


def _find_class(annotation: object, base: type[_T]) -> type[_T] | None:
    """Find a subclass of ``base`` in a type annotation such as ``list[X] | None``."""
    if isinstance(annotation, type) and issubclass(annotation, base):
        return annotation
    for arg in get_args(annotation):
        found = _find_class(arg, base)
        if found is not None:
            return found

    return None
