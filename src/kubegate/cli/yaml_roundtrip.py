"""Round-trip YAML that writes a file back the way it was written: ruamel.yaml plus what it
alone would lose.

ruamel's round-trip mode keeps comments, key order, quotes, flow style, anchors and unknown
fields. This module also keeps the spelling of nulls (``null``, ``~``, nothing) and booleans
(``True``, ``yes``), the file's indentation (mapping indent and block-sequence style, guessed
from the text), a ``%YAML`` directive, CRLF line ends, a BOM, a ``---`` start and a missing
final newline, and it moves the comment lines that follow a list item (:func:`move_tail`) so
that a comment before the next key stays there when an item is appended or removed (not
when the item ends in flow style: the comment then stays before the appended item).

What still changes when a document is dumped: trailing spaces, multi-line plain scalars
(joined onto one line), escapes in double-quoted scalars (decoded), timestamps (reformatted),
a ``...`` end marker (dropped), and the indentation of a file that mixes styles (the first
one found wins).

kubectl parses YAML 1.1, where ``y``, ``n``, ``yes``, ``no``, ``on`` and ``off`` are booleans
and ``010`` is octal: :func:`to_node` double-quotes every string that YAML 1.1 would read as
anything but that string.
"""

from __future__ import annotations

import dataclasses
import io
import re
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import CommentMark
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

_YAML11_WORDS = frozenset({"", "~", "y", "n", "yes", "no", "on", "off", "true", "false", "null"})
_YAML11_NUMBER = re.compile(r"[-+.]?[0-9][0-9_:.eE+-]*")


@dataclass(frozen=True, slots=True)
class Layout:
    """How a file is laid out, so that :func:`render` writes what :func:`parse` read."""

    mapping: int = 2
    sequence: int = 2
    offset: int = 0
    newline: str = "\n"
    bom: bool = False
    final_newline: bool = True
    explicit_start: bool = False
    version: tuple[int, int] | None = None
    """The ``%YAML`` directive's version, when the file has one (1.1 reads ``yes`` as true)."""


class _Null:
    """A YAML null that remembers its spelling: ``null``, ``~``, ``Null`` or nothing."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __bool__(self) -> bool:
        return False


class _Bool(int):
    """A YAML boolean that remembers its spelling (``True``; ``yes`` in a YAML 1.1 file)."""

    text = "true"


class _Constructor(RoundTripConstructor):
    def construct_yaml_null(self, node: Any) -> Any:
        return _Null(node.value)

    def construct_yaml_sbool(self, node: Any) -> Any:
        value = super().construct_yaml_sbool(node)
        if node.anchor:
            return value
        kept = _Bool(value)
        kept.text = node.value
        return kept


_Constructor.add_constructor("tag:yaml.org,2002:null", _Constructor.construct_yaml_null)
_Constructor.add_constructor("tag:yaml.org,2002:bool", _Constructor.construct_yaml_sbool)


class _Representer(RoundTripRepresenter):
    def represent_kept(self, data: _Null | _Bool) -> ScalarNode:
        tag = "null" if isinstance(data, _Null) else "bool"
        return self.represent_scalar(f"tag:yaml.org,2002:{tag}", data.text)


_Representer.add_representer(_Null, _Representer.represent_kept)
_Representer.add_representer(_Bool, _Representer.represent_kept)


def is_null(value: object) -> bool:
    """Whether a parsed value is absent or a YAML null (whatever its spelling)."""
    return value is None or isinstance(value, _Null)


def _yaml(layout: Layout) -> YAML:
    """A fresh round-trip YAML: instances keep state (``%YAML``) from one document to the next."""
    yaml = YAML(typ="rt", pure=True)
    yaml.Constructor = _Constructor
    yaml.Representer = _Representer
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=layout.mapping, sequence=layout.sequence, offset=layout.offset)
    yaml.explicit_start = layout.explicit_start
    yaml.version = layout.version
    return yaml


def guess_layout(text: str) -> Layout:
    """The first mapping indent and block-sequence style in ``text``; kubectl's by default."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    mapping: int | None = None
    sequence: tuple[int, int] | None = None
    for prev, line in zip(lines, lines[1:], strict=False):
        if not prev.rstrip().endswith(":"):
            continue
        key_col = len(prev) - len(prev.lstrip(" -"))
        body = line.lstrip(" ")
        col = len(line) - len(body)
        if body.startswith("- ") and sequence is None and col >= key_col:
            offset = col - key_col
            sequence = (offset + len(body) - len(body[1:].lstrip(" ")), offset)
        elif not body.startswith("-") and col > key_col and mapping is None:
            mapping = col - key_col
    seq, offset = sequence or (2, 0)
    return Layout(
        mapping=mapping or 2,
        sequence=seq,
        offset=offset,
        newline="\r\n" if "\r\n" in text else "\n",
        bom=text.startswith("\ufeff"),
        final_newline=not text or text.endswith("\n"),
        explicit_start=bool(lines) and lines[0].removeprefix("\ufeff").startswith("---"),
    )


def parse(text: str) -> tuple[object, Layout]:
    """The document in ``text`` (None when it holds none) and its layout. Raises ruamel's
    ``YAMLError`` (``MarkedYAMLError`` with a line) for anything that is not one YAML document."""
    layout = guess_layout(text)
    body = text.removeprefix("\ufeff")
    yaml = _yaml(layout)
    root = yaml.load(body) if body.strip() else None
    version = yaml.doc_infos[-1].doc_version if yaml.doc_infos else None
    if version is not None:
        layout = dataclasses.replace(layout, version=(version.major, version.minor))
    return (None if is_null(root) else root), layout


def render(root: object, layout: Layout) -> str:
    """``root`` as text, laid out as ``layout`` says."""
    buffer = io.StringIO()
    _yaml(layout).dump(root, buffer)
    text = buffer.getvalue()
    if not layout.final_newline:
        text = text.removesuffix("\n")
    if layout.newline != "\n":
        text = text.replace("\n", layout.newline)
    return "\ufeff" + text if layout.bom else text


def to_node(value: object) -> Any:
    """Plain dicts, lists and strings as YAML nodes, quoting strings YAML 1.1 would misread."""
    if isinstance(value, dict):
        return CommentedMap((k, to_node(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return CommentedSeq(to_node(v) for v in value)
    if isinstance(value, str) and (
        value.lower() in _YAML11_WORDS or _YAML11_NUMBER.fullmatch(value)
    ):
        return DoubleQuotedScalarString(value)
    return value


Holder = tuple[CommentedMap | CommentedSeq, Any, int]
"""A place ruamel keeps a comment: a container, a key or index in it, a slot in its ``ca``."""


def key_holder(mapping: CommentedMap, key: str) -> Holder:
    """Where the comment lines after ``key: <scalar or empty flow value>`` are kept."""
    return (mapping, key, 2)


def tail(node: object) -> Holder | None:
    """Where ruamel keeps the comment lines that follow ``node``: its deepest last key or item.
    None when the path goes through flow style (ruamel keeps those comments twice)."""
    holder: Holder | None = None
    while isinstance(node, CommentedMap | CommentedSeq) and len(node):
        if node.fa.flow_style():
            return None
        key = list(node)[-1] if isinstance(node, CommentedMap) else len(node) - 1
        holder = (node, key, 2 if isinstance(node, CommentedMap) else 0)
        node = node[key]
    if isinstance(node, CommentedMap | CommentedSeq) and node.fa.flow_style():
        return None
    return holder


def move_tail(source: Holder | None, target: Holder | None) -> None:
    """Move the comment lines after ``source`` (not its end-of-line comment) after ``target``."""
    if source is None or target is None:
        return
    container, key, index = source
    slot = container.ca.items.get(key)
    token = slot[index] if slot and len(slot) > index else None
    if token is None:
        return
    eol, _, rest = token.value.partition("\n")
    if not rest:
        return
    if eol:
        token.value = eol + "\n"
    else:
        slot[index] = None
    container, key, index = target
    slot = container.ca.items.setdefault(key, [None, None, None, None])
    if slot[index] is None:
        slot[index] = CommentToken("\n" + rest, CommentMark(0))
    else:
        slot[index].value += rest
