"""Typed, positioned reading of ruamel.yaml round-trip documents (SPEC CFG-1).

With ``appyaml`` and ``dispatchyaml``, one of the only modules touching ruamel, and the only one
importing it. Its round-trip loader keeps the line and column of every key and value, so each
problem names ``file:line:col``. This module knows nothing of App Engine's elements: it reads a
yaml file into a document (``parse_yaml``; unreadable files, bad encodings and YAML syntax
errors become problems, nothing escapes), names positions (``key_pos``, ``value_pos``,
``item_pos``), and reads typed values with ``YamlFile``, which records a problem on a type error
and returns None so that loading goes on and every problem is reported at once (``Sink``).
"""

from __future__ import annotations

import codecs
import datetime
import difflib
import re
import warnings
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError

from gfe_proxy.config import Position
from gfe_proxy.errors import ConfigError, Problem

__all__ = [
    "Pos", "Sink", "YamlFile", "as_text", "did_you_mean", "item_pos", "key_pos", "kind",
    "locate", "node_pos", "parse_yaml", "show", "value_pos",
]

_T = TypeVar("_T")
Pos = tuple[int, int]  # 1-based (line, column)

_TRUE = frozenset({"true", "yes", "on"})  # App Engine's parser reads booleans as YAML 1.1
_FALSE = frozenset({"false", "no", "off"})

_SERVICE_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_INT_TEXT = re.compile(r"\s*\d{1,10}\s*", re.ASCII)
_FLOAT_TEXT = re.compile(r"\s*(?:\d{1,10}(?:\.\d*)?|\.\d+)\s*", re.ASCII)


# --------------------------------------------------------------------------- positions


def node_pos(node: object) -> Pos:
    """Where a mapping or list node starts; (1, 1) for nodes without a position."""
    lc = getattr(node, "lc", None)
    line, col = getattr(lc, "line", None), getattr(lc, "col", None)
    if isinstance(line, int) and isinstance(col, int):
        return line + 1, col + 1
    return 1, 1


def _lc_pos(node: object, method: str, arg: object) -> Pos:
    # Keys brought in by a `<<:` merge, and some aliased nodes, carry no position of their
    # own; the enclosing node's start is the best we can name then.
    try:
        line, col = getattr(node.lc, method)(arg)  # type: ignore[attr-defined]
    except (AttributeError, KeyError, IndexError, TypeError):
        return node_pos(node)
    return int(line) + 1, int(col) + 1


def key_pos(m: dict[Any, Any], key: object) -> Pos:
    """Where ``key`` is written in the mapping ``m``."""
    return _lc_pos(m, "key", key)


def value_pos(m: dict[Any, Any], key: object) -> Pos:
    """Where the value of ``key`` is written in ``m`` (the key's position for a null)."""
    if m.get(key) is None:  # a null value has no node; ruamel points at the next token
        return key_pos(m, key)
    return _lc_pos(m, "value", key)


def item_pos(seq: list[Any], index: int) -> Pos:
    """Where item ``index`` of the list ``seq`` is written."""
    return _lc_pos(seq, "item", index)


def kind(value: object) -> str:
    """What ``value`` is, for messages: "a string", "a list", "nothing", ..."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return "a tagged or special value"


def show(value: object) -> str:
    """``value`` as quoted in a message: short scalars verbatim, the rest by kind."""
    if not isinstance(value, str | int | float):
        return kind(value)
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A "; did you mean ...?" suffix naming the closest choice, or "" (SPEC CFG-1)."""
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _compile(pattern: str) -> tuple[re.Pattern[str] | None, str]:
    """``re.compile`` that reports instead of raising; POSIX classes only warn in Python."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return re.compile(pattern), ""
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        return None, str(exc)


# --------------------------------------------------------------------------- problems


class Sink:
    """Collects problems from every file; hands them back in file order."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._rank: dict[str, int] = {}

    def register(self, file: str) -> None:
        """Files rank in the order they are opened: the app file, then its includes."""
        self._rank.setdefault(file, len(self._rank))

    def add(self, file: str, pos: Pos, message: str) -> None:
        """Record one problem at ``file:line:col``."""
        self.register(file)
        self.problems.append(Problem(file, pos[0], pos[1], message))

    def raise_if_any(self) -> None:
        """Raise one ``ConfigError`` with every problem, in file, line, column order."""
        if self.problems:
            ordered = sorted(self.problems, key=lambda p: (self._rank[p.file], p.line, p.column))
            raise ConfigError(ordered)


@dataclass(slots=True)
class YamlFile:
    """One yaml file being read: where problems go and typed readers for its values."""

    display: str  # as shown in messages: the path the user gave, joined with includes
    path: Path  # absolute
    sink: Sink

    def __post_init__(self) -> None:
        self.sink.register(self.display)

    def error(self, pos: Pos, message: str) -> None:
        """Record a problem at ``pos`` in this file."""
        self.sink.add(self.display, pos, message)

    def position(self, pos: Pos) -> Position:
        """``pos`` in this file, as kept in the config values."""
        return Position(file=self.display, line=pos[0], column=pos[1])

    def check_keys(self, m: dict[Any, Any], known: Collection[str], where: str) -> None:
        """SPEC CFG-1: unknown keys are errors, with a suggestion when one is close."""
        for key in m:
            if not isinstance(key, str | int | float) or isinstance(key, bool):
                self.error(key_pos(m, key), f"keys in {where} must be names, not {kind(key)}")
            elif key not in known:
                hint = did_you_mean(key, known) if isinstance(key, str) else ""
                self.error(key_pos(m, key), f"unknown element {show(key)} in {where}{hint}")

    def mapping(self, m: dict[Any, Any], key: str) -> dict[Any, Any] | None:
        """``m[key]`` if it is a mapping; None when absent, null or (a problem) not a mapping."""
        value = m.get(key)
        if value is None or isinstance(value, dict):
            return value
        self.error(value_pos(m, key), f"{key!r} must be a mapping, not {kind(value)}")
        return None

    def sequence(self, m: dict[Any, Any], key: str) -> list[Any] | None:
        """``m[key]`` if it is a list; None when absent, null or (a problem) not a list."""
        value = m.get(key)
        if value is None or isinstance(value, list):
            return value
        self.error(value_pos(m, key), f"{key!r} must be a list, not {kind(value)}")
        return None

    def string(self, m: dict[Any, Any], key: str) -> str | None:
        """A scalar as text (``version: 1`` is ``"1"``); None when absent or null."""
        value = m.get(key)
        text = as_text(value)
        if text is None and value is not None:
            self.error(value_pos(m, key), f"{key!r} must be a string, not {kind(value)}")
        return text

    def boolean(self, m: dict[Any, Any], key: str) -> bool | None:
        """A YAML 1.1 boolean (``yes``/``off`` too); None when absent, null or invalid."""
        value = m.get(key)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        self.error(value_pos(m, key), f"{key!r} must be true or false, not {show(value)}")
        return None

    def choice(self, m: dict[Any, Any], key: str, choices: tuple[str, ...]) -> str | None:
        """One of ``choices``, with a suggestion when the text is close to one."""
        text = self.string(m, key)
        if text is None or text in choices:
            return text
        self.error(
            value_pos(m, key),
            f"{key!r} must be one of {', '.join(choices)}; got {show(text)}"
            + did_you_mean(text, choices),
        )
        return None

    def number(
        self, m: dict[Any, Any], key: str, low: float, high: float, *, integer: bool
    ) -> float | None:
        """A number in ``[low, high]`` (numeric text too); None when absent, null or invalid."""
        value = m.get(key)
        if value is None:
            return None
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and (_INT_TEXT if integer else _FLOAT_TEXT).fullmatch(value):
            number = int(value) if integer else float(value)
        if number is None or (integer and not isinstance(number, int)):
            what = "a whole number" if integer else "a number"
            self.error(value_pos(m, key), f"{key!r} must be {what}, not {show(value)}")
            return None
        if not low <= number <= high:  # written so that NaN fails too
            self.error(
                value_pos(m, key),
                f"{key!r} must be between {low:g} and {high:g}; got {show(value)}",
            )
            return None
        return number

    def integer(self, m: dict[Any, Any], key: str, low: int, high: int) -> int | None:
        """A whole number in ``[low, high]``; None when absent, null or invalid."""
        number = self.number(m, key, low, high, integer=True)
        return None if number is None else int(number)

    def duration(
        self, m: dict[Any, Any], key: str, parse: Callable[[str], _T]
    ) -> tuple[bool, _T | None]:
        """(ok, seconds) for a CFG-3 duration; ok is False when absent or invalid."""
        text = self.string(m, key)
        if text is None:
            return False, None
        try:
            return True, parse(text)
        except ValueError as exc:
            self.error(value_pos(m, key), f"{key!r}: {exc}")
            return False, None

    def regex(self, pos: Pos, what: str, pattern: str) -> re.Pattern[str] | None:
        """``pattern`` compiled; None, with a problem at ``pos``, when it is not valid."""
        compiled, reason = _compile(pattern)
        if compiled is None:
            self.error(pos, f"{what} {show(pattern)} is not a valid regular expression: {reason}")
        return compiled

    def service_id(self, m: dict[Any, Any], key: str, what: str = "service") -> str | None:
        """A service (or version) id: 1-63 of ``[a-z0-9-]``, no '-' at either end."""
        text = self.string(m, key)
        if text is not None and not _SERVICE_ID.fullmatch(text):
            self.error(
                value_pos(m, key),
                f"{what} id {show(text)} must be 1-63 lowercase letters, digits and '-', "
                "not starting or ending with '-'",
            )
        return text

    def string_list(self, m: dict[Any, Any], key: str) -> list[tuple[str, Pos]]:
        """Each scalar of the list ``m[key]`` as text, with its position."""
        items = self.sequence(m, key) or []
        result: list[tuple[str, Pos]] = []
        for i, item in enumerate(items):
            text = as_text(item)
            if text is None:
                self.error(item_pos(items, i), f"{key!r} entries must be strings, not {kind(item)}")
            else:
                result.append((text, item_pos(items, i)))
        return result


def as_text(value: object) -> str | None:
    """A YAML scalar as text (``1`` is ``"1"``); None for mappings, lists, null, booleans."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int | float | datetime.date) and not isinstance(value, bool):
        return str(value)
    return None


# --------------------------------------------------------------------------- reading files


def _decode(data: bytes) -> str:
    # YAML allows UTF-16/32 with a byte order mark; everything else must be UTF-8.
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return data.decode("utf-32")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    return data.decode("utf-8-sig")


def _text_pos(text: str, index: int) -> Pos:
    before = text[:index]
    return before.count("\n") + 1, index - before.rfind("\n")


def parse_yaml(f: YamlFile) -> tuple[bool, Any]:
    """(ok, document); on failure the problem has been recorded."""
    try:
        data = f.path.read_bytes()
    except FileNotFoundError:
        f.error((1, 1), "file not found")
        return False, None
    except IsADirectoryError:
        f.error((1, 1), "is a directory, not a yaml file")
        return False, None
    except (OSError, ValueError) as exc:
        f.error((1, 1), f"cannot read file: {getattr(exc, 'strerror', None) or exc}")
        return False, None
    try:
        text = _decode(data)
    except UnicodeDecodeError as exc:
        # latin-1 maps each byte to one character, so the byte offset is the index.
        pos = _text_pos(data.decode("latin-1"), exc.start)
        f.error(pos, f"not valid {exc.encoding} text: {exc.reason}")
        return False, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return True, YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        f.error(pos, f"invalid YAML: {exc.problem or exc.context or 'syntax error'}{context}")
    except ReaderError as exc:
        f.error(_text_pos(text, exc.position), f"invalid YAML: character {exc.character:#x}: "
                f"{exc.reason}")
    except Exception as exc:  # ruamel also raises ValueError (dates), RecursionError (nesting)
        f.error((1, 1), f"invalid YAML: {exc}")
    return False, None


def locate(path: str | Path, name: str) -> tuple[Path, str]:
    """(absolute file, display) for a directory (holding ``name``) or a yaml file."""
    given = Path(path)
    try:
        if given.is_dir():
            given = given / name
        # The directory is resolved, not the file: a symlinked app.yaml keeps its app.
        return given.parent.resolve() / given.name, str(given)
    except (OSError, RuntimeError, ValueError):
        return given.absolute(), str(given)
