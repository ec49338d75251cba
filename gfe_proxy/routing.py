"""URL routing: app.yaml ``url`` patterns compiled once, matched top to bottom (SPEC ROUTE-1…4).

Theory of operation. App Engine's url patterns are POSIX extended regular expressions (without
collating elements or equivalence classes) plus the Perl classes ``\\w \\W \\s \\S \\d \\D``
(app.yaml reference). ``translate_pattern`` rewrites one into Python ``re`` syntax by parsing
it, so ERE rules that Python spells differently come out right: ``[[:alpha:]]``, a ``)`` with
no ``(`` is a literal, ``.`` matches any character, ``$`` is only the end of the string,
``a**`` is ``(a*)*``. Matching is on the whole path (``re.fullmatch``).

Decisions where the ERE reading and the way app.yaml files are written in practice part
(App Engine validates these patterns with Python's ``re`` when deploying, so files in the
wild lean on it):
- a backslash inside a bracket escapes, as in Perl and Python (``[\\w.-]``, ``[^\\/]``);
  in strict POSIX it would be a literal backslash;
- ``*?``, ``+?``, ``??`` and ``{m,n}?`` are lazy, as in Python;
- Python extension groups ``(?:…)``, ``(?P<name>…)``, look-arounds and ``(?i)`` pass through
  (any other ``(?`` is read as ERE: a group starting with a literal ``?``);
- ``\\w \\d \\s`` are ASCII (POSIX C locale), not Unicode.

``Router`` tries handlers in one combined alternation (``(?P<_h0>…)|(?P<_h1>…)|…``):
Python's engine tries the branches in order and ``fullmatch`` only accepts a branch that
consumes the whole path, so the first handler that matches wins exactly as a loop would, at
the cost of one C-level call. Before that, the path's first segment narrows the branches to
the handlers that can match it (see ``Router``). Patterns that cannot share one regex
(duplicate group names, inline global flags, back-references past ``\\99``) make the router
fall back to a loop over single patterns.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from gfe_proxy.config import Handler

__all__ = ["RouteMatch", "Router", "reserved", "route_path", "translate_pattern"]

# ASCII sets for POSIX bracket classes, as Python set bodies (SPEC ROUTE-1).
_POSIX_CLASSES: dict[str, str] = {
    "alpha": "A-Za-z",
    "digit": "0-9",
    "alnum": "0-9A-Za-z",
    "upper": "A-Z",
    "lower": "a-z",
    "space": " \\t\\n\\r\\f\\v",
    "blank": " \\t",
    "punct": "!-/:-@\\[-`{-~",
    "print": " -~",
    "graph": "!-~",
    "cntrl": "\\x00-\\x1f\\x7f",
    "xdigit": "0-9A-Fa-f",
    "word": "0-9A-Za-z_",  # GNU extension, harmless to accept
}
# The Perl classes App Engine adds: (set body, negated?).
_PERL_CLASSES: dict[str, tuple[str, bool]] = {
    "d": (_POSIX_CLASSES["digit"], False),
    "D": (_POSIX_CLASSES["digit"], True),
    "w": (_POSIX_CLASSES["word"], False),
    "W": (_POSIX_CLASSES["word"], True),
    "s": (_POSIX_CLASSES["space"], False),
    "S": (_POSIX_CLASSES["space"], True),
}
_CHAR_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_PY_SPECIAL = frozenset(".^$*+?{}[]\\|()")
_INTERVAL = re.compile(r"\{(\d*)(,(\d*))?\}")
# Python extension group headers accepted for compatibility (see module docstring).
_EXTENSION = re.compile(
    r"\(\?(?:"
    r"(?P<comment>#[^)]*\))"
    r"|(?P<backref>P=[A-Za-z_]\w*\))"
    r"|(?P<flags>[aiLmsux]+\))"
    r"|(?P<named>P<[A-Za-z_]\w*>)"
    r"|(?P<group>[:=!>]|<[=!]|[aiLmsux]*(?:-[imsx]+)?:)"
    r")"
)
_DOT = "(?s:.)"  # ERE `.` matches any character, newline included


class _CombineError(Exception):
    """The pattern is valid alone but cannot be placed inside a combined regex."""


def _set_char(c: str) -> str:
    return c if c.isalnum() else re.escape(c)


def _lit(c: str) -> str:
    return "\\" + c if c in _PY_SPECIAL else c


class _Translator:
    """Recursive-descent ERE parser that emits Python ``re`` syntax."""

    def __init__(self, src: str, group_offset: int) -> None:
        self.src = src
        self.i = 0
        self.depth = 0
        self.groups = 0  # capturing groups opened so far (ERE numbering)
        self.closed: set[int] = set()
        self.offset = group_offset

    def error(self, message: str) -> ValueError:
        return ValueError(f"{message} at position {self.i} in {self.src!r}")

    def peek(self) -> str:
        return self.src[self.i] if self.i < len(self.src) else ""

    def translate(self) -> str:
        out = self.alternation()
        if self.i < len(self.src):  # pragma: no cover - alternation consumes all at depth 0
            raise self.error("unexpected character")
        return out

    def alternation(self) -> str:
        branches = [self.branch()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.branch())
        return "|".join(branches)

    def branch(self) -> str:
        pieces: list[str] = []
        quantifiable = False  # the last piece can take a quantifier
        quantified = 0  # 0: bare atom, 1: carries a greedy quantifier, 2: lazy or stacked
        while True:
            c = self.peek()
            if not c or c == "|" or (c == ")" and self.depth > 0):
                return "".join(pieces)
            quant = self.quantifier()
            if quant is not None:
                if not quantifiable:
                    # ERE leaves a leading quantifier undefined; GNU reads it literally.
                    pieces.append("".join(_lit(ch) for ch in quant))
                    quantifiable, quantified = True, 0
                elif quantified == 0:
                    pieces[-1] += quant
                    quantified = 1
                elif quantified == 1 and quant == "?":
                    pieces[-1] += "?"  # Python's lazy quantifier (see module docstring)
                    quantified = 2
                else:
                    pieces[-1] = f"(?:{pieces[-1]}){quant}"  # ERE `a**` is `(a*)*`
                    quantified = 1
                continue
            atom, quantifiable = self.atom()
            quantified = 0
            pieces.append(atom)

    def quantifier(self) -> str | None:
        c = self.peek()
        if c in ("*", "+", "?"):
            self.i += 1
            return c
        if c == "{":
            m = _INTERVAL.match(self.src, self.i)
            if m is None or (m.group(1) == "" and not m.group(3)):
                return None  # not an interval: `{` is an ordinary character
            low = int(m.group(1) or "0")
            if m.group(2) is None:
                text = f"{{{low}}}"
            elif m.group(3):
                high = int(m.group(3))
                if high < low:
                    raise self.error("interval minimum greater than maximum")
                text = f"{{{low},{high}}}"
            else:
                text = f"{{{low},}}"
            self.i = m.end()
            return text
        return None

    def atom(self) -> tuple[str, bool]:
        c = self.src[self.i]
        if c == "(":
            return self.group()
        if c == "[":
            self.i += 1
            return self.bracket(), True
        self.i += 1
        if c == ".":
            return _DOT, True
        if c == "^":
            return "^", False
        if c == "$":
            return "\\Z", False  # Python's `$` would also match before a final newline
        if c == "\\":
            return self.escape()
        return _lit(c), True  # includes an unmatched `)`, which ERE reads literally

    def group(self) -> tuple[str, bool]:
        # A `(?` that is no Python extension reads as ERE: a group starting with a literal `?`.
        ext = _EXTENSION.match(self.src, self.i) if self.src.startswith("(?", self.i) else None
        number = 0
        if ext is not None:
            self.i = ext.end()
            if ext.group("comment"):
                return "", False
            if ext.group("backref") or ext.group("flags"):
                return ext.group(0), bool(ext.group("backref"))
            if ext.group("named"):
                self.groups += 1
                number = self.groups
            head = ext.group(0)
        else:
            self.i += 1
            self.groups += 1
            number = self.groups
            head = "("
        self.depth += 1
        inner = self.alternation()
        self.depth -= 1
        if self.peek() != ")":
            raise self.error("unmatched (")
        self.i += 1
        if number:
            self.closed.add(number)
        return f"{head}{inner})", True

    def escape(self) -> tuple[str, bool]:
        if self.i >= len(self.src):
            raise self.error("trailing backslash")
        c = self.src[self.i]
        self.i += 1
        if c in _PERL_CLASSES:
            body, negated = _PERL_CLASSES[c]
            return f"[{'^' if negated else ''}{body}]", True
        if c in "123456789":
            number = int(c)
            if number not in self.closed:
                raise self.error(f"back-reference \\{c} to a group not closed yet")
            target = number + self.offset
            if target > 99:
                raise _CombineError
            return f"(?:\\{target})", True
        if c in "bBAZ":
            return "\\" + c, False
        if c == "<":
            return "\\b(?=[0-9A-Za-z_])", False  # GNU start-of-word
        if c == ">":
            return "\\b(?<=[0-9A-Za-z_])", False  # GNU end-of-word
        if c in _CHAR_ESCAPES:
            return "\\" + c, True
        if c == "x":
            return self.hex_escape(), True
        return _lit(c), True  # ERE: an escaped special character is itself

    def hex_escape(self) -> str:
        digits = self.src[self.i : self.i + 2]
        if len(digits) != 2 or any(d not in "0123456789abcdefABCDEF" for d in digits):
            raise self.error("bad \\x escape")
        self.i += 2
        return "\\x" + digits

    def bracket(self) -> str:
        """Parse after ``[`` through ``]``; emit a Python set (or a small group)."""
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        body: list[str] = []
        excluded: list[str] = []  # bodies of negated Perl classes (`[\W_]`)
        first = True
        while True:
            if self.i >= len(self.src):
                raise self.error("unterminated [")
            c = self.src[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "[" and self.src.startswith(("[.", "[="), self.i):
                raise self.error("collating elements and equivalence classes are not supported")
            if c == "[" and self.src.startswith("[:", self.i):
                end = self.src.find(":]", self.i + 2)
                name = self.src[self.i + 2 : end] if end >= 0 else ""
                if name not in _POSIX_CLASSES:
                    raise self.error(f"unknown character class [:{name}:]")
                body.append(_POSIX_CLASSES[name])
                self.i = end + 2
                continue
            if c == "\\" and self.src[self.i + 1 : self.i + 2] in _PERL_CLASSES:
                cls_body, negated = _PERL_CLASSES[self.src[self.i + 1]]
                (excluded if negated else body).append(cls_body)
                self.i += 2
                continue
            low = self.bracket_char()
            if self.peek() == "-" and self.i + 1 < len(self.src) and self.src[self.i + 1] != "]":
                self.i += 1
                if self.src.startswith(("[.", "[=", "[:"), self.i) or (
                    self.src[self.i] == "\\" and self.src[self.i + 1 : self.i + 2] in _PERL_CLASSES
                ):
                    raise self.error("a range cannot end in a class")
                high = self.bracket_char()
                if ord(high) < ord(low):
                    raise self.error("invalid range")
                body.append(f"{_set_char(low)}-{_set_char(high)}")
            else:
                body.append(_set_char(low))
        positive = "".join(body)
        if not excluded:
            return f"[{'^' if negate else ''}{positive}]"
        if not negate:  # union: listed chars, or any char outside each excluded class
            alts = ([f"[{positive}]"] if positive else []) + [f"[^{e}]" for e in excluded]
            return "(?:" + "|".join(alts) + ")"
        # `[^a\W]`: not listed, and inside every class whose complement was listed
        guard = f"(?![{positive}])" if positive else ""
        looks = "".join(f"(?=[{e}])" for e in excluded[1:])
        return f"(?:{guard}{looks}[{excluded[0]}])"

    def bracket_char(self) -> str:
        c = self.src[self.i]
        self.i += 1
        if c != "\\" or self.i >= len(self.src):
            return c
        e = self.src[self.i]
        self.i += 1
        if e in _CHAR_ESCAPES:
            return _CHAR_ESCAPES[e]
        if e == "x":
            return chr(int(self.hex_escape()[2:], 16))
        return e


def _translate(ere: str, group_offset: int = 0) -> tuple[str, int]:
    t = _Translator(ere, group_offset)
    return t.translate(), t.groups


def translate_pattern(ere: str) -> str:
    """Translate an app.yaml url pattern (POSIX ERE + Perl classes) into Python ``re`` syntax.

    The result is meant for ``re.fullmatch``; a pattern's own ``^``/``$`` stay harmless.
    Raises ValueError for a pattern that is not a valid ERE (unterminated ``[``, bad range, …).
    ``translate_pattern(r"/(.*\\.(gif|png))$") == r"/((?s:.)*\\.(gif|png))\\Z"``.
    """
    out, _ = _translate(ere)
    try:
        re.compile(out)
    except re.error as exc:
        raise ValueError(f"invalid pattern {ere!r}: {exc}") from exc
    return out


_BACKREF = re.compile(r"\\([1-9])")


def _substitute(template: str, groups: Sequence[str | None]) -> str:
    """Replace ``\\1``…``\\9`` with the matched groups (SPEC ROUTE-1); absent groups are empty."""

    def one(m: re.Match[str]) -> str:
        n = int(m.group(1))
        return (groups[n - 1] or "") if n <= len(groups) else ""

    return _BACKREF.sub(one, template)


def route_path(raw_path: str) -> str:
    """The path ``Router.match`` expects: percent-decoded, except that ``%2F`` stays encoded.

    Decoding first means ``/%61dmin/x`` meets the ``/admin/.*`` handler (and its ``login``)
    exactly as the app, which sees a decoded ``PATH_INFO``, will read it; dev_appserver matches
    decoded paths too. ``%2F`` stays ``%2F`` (as CherryPy's WSGI server did for dev_appserver)
    so an encoded separator never becomes a path separator and static.py can refuse it
    (SPEC STATIC-5). aiohttp's ``request.path`` decodes ``%2F``, so pass ``request.raw_path``
    without its query.
    """
    if "%" not in raw_path:
        return raw_path
    parts = re.split("%2[fF]", raw_path)
    return "%2F".join(unquote(p, errors="replace") for p in parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteMatch:
    """The handler that won, with its back-references substituted.

    ``file`` (static handlers only) is relative to the app root, ``/``-separated, not yet
    checked: static.py refuses traversal, skipped files and upload mismatches.
    """

    handler: Handler
    index: int  # position in the handler list (0-based)
    script: str | None = None
    file: str | None = None


@dataclass(frozen=True, slots=True)
class _Compiled:
    handler: Handler
    index: int
    regex: re.Pattern[str]  # the handler alone (fallback loop)
    source: str  # translated pattern (the static_dir suffix included)
    groups: int  # capturing groups in ``source``
    dir_prefix: str | None  # static_dir, normalised, with a trailing "/" (or "" for ".")
    files_template: str | None  # static_files with a leading "./" removed


def _compile_handler(handler: Handler, index: int) -> _Compiled:
    source, groups = _translate(handler.url)  # offset 0: no _CombineError possible
    dir_prefix = None
    files_template = None
    if handler.static_dir is not None:
        source = _static_dir_source(handler.url, source)
        groups += 1
        normal = posixpath.normpath(handler.static_dir)
        dir_prefix = "" if normal == "." else normal + "/"
    elif handler.static_files is not None:
        files_template = handler.static_files
        while files_template.startswith("./"):
            files_template = files_template[2:]
    try:
        regex = re.compile(source)
    except re.error as exc:
        raise ValueError(f"invalid url pattern {handler.url!r}: {exc}") from exc
    return _Compiled(handler, index, regex, source, groups, dir_prefix, files_template)


_MATCH_CACHE_SIZE = 4096  # paths; cleared wholesale when full
_QUANTIFIERS = frozenset("*+?{")


def _first_segment(ere: str) -> str | None:
    """The first path segment every match must have (``/api/.*`` → ``api``), or None.

    Scans the pattern's leading literal run; anything doubtful (top-level ``|``, a class, a
    quantifier) ends it, so a None only costs speed, never correctness.
    """
    i = 1 if ere.startswith("^") else 0
    if not ere.startswith("/", i):
        return None
    chars: list[str] = []
    i += 1
    while i < len(ere):
        c = ere[i]
        if c == "/":
            break
        if c == "\\" and i + 1 < len(ere) and not ere[i + 1].isalnum():
            c = ere[i + 1]
            i += 1
        elif not (c.isalnum() or c in "-_~!,;:@=&'\"%<>`#"):
            return None
        chars.append(c)
        i += 1
    else:
        return None  # no second "/": the segment may continue in any way
    if i + 1 < len(ere) and ere[i + 1] in _QUANTIFIERS:
        return None  # `/api/?` makes the "/" optional
    if _has_top_level_bar(ere):
        return None
    return "".join(chars)


def _has_top_level_bar(ere: str) -> bool:
    depth = 0
    i = 0
    while i < len(ere):
        c = ere[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":  # skip a bracket expression; `]` first is a member
            j = i + 1 + (ere.startswith("^", i + 1))
            j += ere.startswith("]", j)
            close = ere.find("]", j)
            while close > 0 and ere.startswith(("[:", "[.", "[="), close - 1):
                close = ere.find("]", close + 1)
            i = close + 1 if close > 0 else len(ere)
            continue
        if c == "(":
            depth += 1
        elif c == ")" and depth:
            depth -= 1
        elif c == "|" and depth == 0:
            return True
        i += 1
    return False


class _Matcher:
    """One ordered set of handlers tried as a single alternation (or a loop, see module doc)."""

    __slots__ = ("_combined", "_entries", "_offsets")

    def __init__(self, entries: Sequence[_Compiled]) -> None:
        self._entries = tuple(entries)
        self._combined: re.Pattern[str] | None = None
        self._offsets: dict[int, _Compiled] = {}  # wrapper group number -> entry
        branches: list[str] = []
        offsets: dict[int, _Compiled] = {}
        wrapper = 1
        try:
            for e in self._entries:
                source, _ = _translate(e.handler.url, wrapper)
                if e.dir_prefix is not None:
                    source = _static_dir_source(e.handler.url, source)
                branches.append(f"(?P<_h{e.index}>{source})")
                offsets[wrapper] = e
                wrapper += 1 + e.groups
            combined = re.compile("|".join(branches)) if branches else None
        except (_CombineError, re.error, ValueError):
            return  # keep the loop; results are identical, only slower
        self._combined = combined
        self._offsets = offsets

    @property
    def combined(self) -> bool:
        return self._combined is not None

    def match(self, path: str) -> RouteMatch | None:
        if self._combined is not None:
            m = self._combined.fullmatch(path)
            if m is None or m.lastindex is None:
                return None
            # the wrapper group closes last, so lastindex names the winning handler
            base = m.lastindex
            entry = self._offsets[base]
            return _build(entry, [m.group(g) for g in range(base + 1, base + 1 + entry.groups)])
        for entry in self._entries:
            m = entry.regex.fullmatch(path)
            if m is not None:
                return _build(entry, m.groups())
        return None


def _static_dir_source(url: str, translated: str) -> str:
    # SPEC ROUTE-2: `url: /stylesheets` serves `/stylesheets/<rest>`, like dev_appserver's
    # `url + "/" + "(?P<file>.*)$"`; the rest is the last group.
    sep = "" if url.endswith("/") else "/"
    return f"(?:{translated}){sep}({_DOT}*)"


def _build(entry: _Compiled, groups: Sequence[str | None]) -> RouteMatch:
    h = entry.handler
    if entry.dir_prefix is not None:
        file = entry.dir_prefix + (groups[-1] or "")
        return RouteMatch(handler=h, index=entry.index, file=file)
    if entry.files_template is not None:
        file = _substitute(entry.files_template, groups)
        return RouteMatch(handler=h, index=entry.index, file=file)
    script = _substitute(h.script, groups) if h.script is not None else None
    return RouteMatch(handler=h, index=entry.index, script=script)


class Router:
    """First-match-wins router over one service's handlers (SPEC ROUTE-1, ROUTE-2).

    Speed: a path's first segment picks the handlers that can match it at all (those whose
    pattern starts with that literal segment, plus every handler that does not start with a
    literal segment), in their original order; those are tried as one alternation. Results
    are memoised per path (bounded).
    """

    __slots__ = ("_cache", "_candidates", "_default", "_entries", "_matchers")

    def __init__(self, entries: Sequence[_Compiled]) -> None:
        self._entries = tuple(entries)
        self._cache: dict[str, RouteMatch | None] = {}
        segments = {e.index: _first_segment(e.handler.url) for e in self._entries}
        keys = {k for k in segments.values() if k is not None}
        self._candidates: dict[str, tuple[_Compiled, ...]] = {
            key: tuple(e for e in self._entries if segments[e.index] in (key, None)) for key in keys
        }
        self._default = _Matcher([e for e in self._entries if segments[e.index] is None])
        self._matchers: dict[str, _Matcher] = {}  # built on first use of each segment

    @classmethod
    def from_handlers(cls, handlers: Sequence[Handler]) -> Router:
        """Compile every handler's url pattern once. Raises ValueError for a bad pattern."""
        return cls([_compile_handler(h, i) for i, h in enumerate(handlers)])

    def __len__(self) -> int:
        return len(self._entries)

    def patterns(self) -> tuple[tuple[Handler, str], ...]:
        """Each handler, in match order, with the Python pattern it is matched by (for `routes`)."""
        return tuple((e.handler, e.source) for e in self._entries)

    def __repr__(self) -> str:
        return f"<Router handlers={len(self._entries)} segments={len(self._candidates)}>"

    def match(self, path: str) -> RouteMatch | None:
        """The first handler whose url matches the whole ``path``, or None (SPEC ROUTE-3: 404).

        ``path`` is the URL path without the query, as ``route_path()`` makes it: decoded,
        except ``%2F`` (see there why). Worked example, with the handlers

            - url: /stylesheets          static_dir: stylesheets
            - url: /(.*\\.(gif|png))$     static_files: static/\\1   upload: static/.*
            - url: /browse/(books|tools) script: \\1.catalog.app

        ``match("/stylesheets/site.css")`` → index 0, ``file="stylesheets/site.css"``;
        ``match("/img/a.png")`` → index 1, ``file="static/img/a.png"``;
        ``match("/browse/tools")`` → index 2, ``script="tools.catalog.app"``;
        ``match("/stylesheets")`` → None (ROUTE-2: the bare prefix is not a file).
        """
        cache = self._cache
        try:
            return cache[path]
        except KeyError:
            pass
        result = self._matcher_for(path).match(path)
        if len(cache) >= _MATCH_CACHE_SIZE:
            cache.clear()
        cache[path] = result
        return result

    def _matcher_for(self, path: str) -> _Matcher:
        end = path.find("/", 1)
        if end < 0 or not path.startswith("/"):
            return self._default
        key = path[1:end]
        matcher = self._matchers.get(key)
        if matcher is None:
            candidates = self._candidates.get(key)
            if candidates is None:
                return self._default
            matcher = self._matchers[key] = _Matcher(candidates)
        return matcher


_BLOCKED = ("/_ah/warmup", "/_ah/start", "/_ah/stop")


def reserved(path: str) -> Literal["login", "logout", "blocked"] | None:
    """Classify ``/_ah/`` paths (SPEC ROUTE-4); None for everything routed normally.

    ``/_ah/login`` and ``/_ah/logout`` are answered by gfe_proxy (LOGIN-4); ``/_ah/warmup``,
    ``/_ah/start`` and ``/_ah/stop`` (and paths below them) are only ever sent by gfe_proxy to
    instances, so a client asking for them gets a 404.
    """
    if not path.startswith("/_ah/"):
        return None
    if path == "/_ah/login":
        return "login"
    if path == "/_ah/logout":
        return "logout"
    for prefix in _BLOCKED:
        if path == prefix or path.startswith(prefix + "/"):
            return "blocked"
    return None
