"""app.yaml and dispatch.yaml text -> frozen config values (SPEC CFG-1 … CFG-5, ROUTE-5).

The only module that imports ruamel.yaml. Its round-trip loader keeps the line and column of
every key and value, so each problem names ``file:line:col``. Loading never stops at the first
problem: every element is checked and all problems are raised together in one ``ConfigError``.
Nothing else escapes: unreadable files, bad encodings and YAML syntax errors become problems too.

Theory of operation: ``_Loader`` reads the app file and, depth first, its ``includes`` (CFG-4),
collecting handlers, ``skip_files`` and ``env_variables`` into ``_Parts``; the app-only elements
are read from the app file alone; cross-element rules (runtime generation, threadsafe, scaling)
run last, on the merged result.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime
import difflib
import os
import re
import warnings
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError

from gfe_proxy.config import (
    DEFAULT_SKIP_FILES,
    MEMORY_MB_GEN2,
    AppConfig,
    AutomaticScaling,
    BasicScaling,
    DispatchRule,
    ErrorHandler,
    Handler,
    ManualScaling,
    Position,
    Scaling,
)
from gfe_proxy.durations import parse_expiration, parse_idle_timeout, parse_latency
from gfe_proxy.errors import ConfigError, Problem

__all__ = ["load_app", "load_dispatch"]

_T = TypeVar("_T")
_Pos = tuple[int, int]  # 1-based (line, column)

# SPEC CFG-1: app.yaml elements gfe_proxy uses ...
APP_ELEMENTS: frozenset[str] = frozenset({
    "runtime", "api_version", "threadsafe", "service", "module", "version", "application",
    "entrypoint", "instance_class", "env_variables", "handlers", "error_handlers",
    "default_expiration", "includes", "inbound_services", "skip_files",
    "automatic_scaling", "basic_scaling", "manual_scaling",
})
# ... and those that only matter in production: accepted, reported by `check` as ignored.
IGNORED_ELEMENTS: frozenset[str] = frozenset({
    "admin_console", "api_config", "app_engine_apis", "auto_id_policy", "beta_settings",
    "build_env_variables", "builtins", "derived_file_type", "endpoints_api_service", "env",
    "libraries", "main", "pagespeed", "runtime_channel", "runtime_config", "service_account",
    "vm", "vm_settings", "vpc_access_connector",
})
# SPEC CFG-4: what an included file may contain (App Engine's AppInclude).
INCLUDE_ELEMENTS: frozenset[str] = frozenset({
    "handlers", "includes", "builtins", "skip_files", "env_variables", "manual_scaling",
    "admin_console", "beta_settings", "vm", "vm_settings",
})
_SCALING_ELEMENTS = ("automatic_scaling", "basic_scaling", "manual_scaling")

# Handler keys: those every handler may carry, then those each handler kind allows
# (App Engine rejects e.g. `upload` on a script handler).
_HANDLER_COMMON = frozenset({
    "url", "secure", "login", "auth_fail_action", "redirect_http_response_code",
    "position", "api_endpoint",
})
_HANDLER_ALLOWED: dict[str, frozenset[str]] = {
    "script": frozenset({"script"}),
    "static_dir": frozenset({
        "static_dir", "mime_type", "expiration", "http_headers", "require_matching_file",
        "application_readable",
    }),
    "static_files": frozenset({
        "static_files", "upload", "mime_type", "expiration", "http_headers",
        "require_matching_file", "application_readable",
    }),
}
HANDLER_KEYS: frozenset[str] = _HANDLER_COMMON.union(*_HANDLER_ALLOWED.values())
_HANDLER_KINDS = ("script", "static_dir", "static_files")
MAX_HANDLERS = 100  # SPEC CFG-2
MAX_DISPATCH_RULES = 20  # SPEC ROUTE-5
MAX_ERROR_FILE_BYTES = 10 * 1024  # SPEC CFG-2: custom error data must be under 10 KB

_AUTOMATIC_KEYS = frozenset({
    "target_cpu_utilization", "target_throughput_utilization", "max_instances",
    "min_instances", "max_concurrent_requests", "max_idle_instances", "min_idle_instances",
    "max_pending_latency", "min_pending_latency",
})
_INBOUND_SERVICES = frozenset({
    "mail", "mail_bounce", "xmpp_message", "xmpp_presence", "xmpp_subscribe", "xmpp_error",
    "channel_presence", "rest", "warmup",
})
_ERROR_CODES = ("default", "over_quota", "dos_api_denial", "timeout")
_REDIRECT_CODES = (301, 302, 303, 307)
_TRUE = frozenset({"true", "yes", "on"})  # App Engine's parser reads booleans as YAML 1.1
_FALSE = frozenset({"false", "no", "off"})

_SERVICE_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_INT_TEXT = re.compile(r"\s*\d{1,10}\s*", re.ASCII)
_FLOAT_TEXT = re.compile(r"\s*(?:\d{1,10}(?:\.\d*)?|\.\d+)\s*", re.ASCII)
_BACKREF = re.compile(r"\\(\d)")
# SPEC CFG-2: headers a static handler may not set; App Engine owns them.
_FORBIDDEN_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade",
    "content-length", "content-encoding", "date", "server",
})
_DISPATCH_HOST = re.compile(r"\*?[a-z0-9.-]*", re.ASCII)


# --------------------------------------------------------------------------- positions


def _node_pos(node: object) -> _Pos:
    lc = getattr(node, "lc", None)
    line, col = getattr(lc, "line", None), getattr(lc, "col", None)
    if isinstance(line, int) and isinstance(col, int):
        return line + 1, col + 1
    return 1, 1


def _lc_pos(node: object, method: str, arg: object) -> _Pos:
    # Keys brought in by a `<<:` merge, and some aliased nodes, carry no position of their
    # own; the enclosing node's start is the best we can name then.
    try:
        line, col = getattr(node.lc, method)(arg)  # type: ignore[attr-defined]
    except (AttributeError, KeyError, IndexError, TypeError):
        return _node_pos(node)
    return int(line) + 1, int(col) + 1


def _key_pos(m: dict[Any, Any], key: object) -> _Pos:
    return _lc_pos(m, "key", key)


def _value_pos(m: dict[Any, Any], key: object) -> _Pos:
    if m.get(key) is None:  # a null value has no node; ruamel points at the next token
        return _key_pos(m, key)
    return _lc_pos(m, "value", key)


def _item_pos(seq: list[Any], index: int) -> _Pos:
    return _lc_pos(seq, "item", index)


def _kind(value: object) -> str:
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


def _show(value: object) -> str:
    if not isinstance(value, str | int | float):
        return _kind(value)
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
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


class _Sink:
    """Collects problems from every file; hands them back in file order."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._rank: dict[str, int] = {}

    def register(self, file: str) -> None:
        """Files rank in the order they are opened: the app file, then its includes."""
        self._rank.setdefault(file, len(self._rank))

    def add(self, file: str, pos: _Pos, message: str) -> None:
        self.register(file)
        self.problems.append(Problem(file, pos[0], pos[1], message))

    def raise_if_any(self) -> None:
        if self.problems:
            ordered = sorted(self.problems, key=lambda p: (self._rank[p.file], p.line, p.column))
            raise ConfigError(ordered)


@dataclass(slots=True)
class _File:
    """One yaml file being read: where problems go and typed readers for its values."""

    display: str  # as shown in messages: the path the user gave, joined with includes
    path: Path  # absolute
    sink: _Sink

    def __post_init__(self) -> None:
        self.sink.register(self.display)

    def error(self, pos: _Pos, message: str) -> None:
        self.sink.add(self.display, pos, message)

    def position(self, pos: _Pos) -> Position:
        return Position(file=self.display, line=pos[0], column=pos[1])

    def check_keys(self, m: dict[Any, Any], known: Collection[str], where: str) -> None:
        """SPEC CFG-1: unknown keys are errors, with a suggestion when one is close."""
        for key in m:
            if not isinstance(key, str | int | float) or isinstance(key, bool):
                self.error(_key_pos(m, key), f"keys in {where} must be names, not {_kind(key)}")
            elif key not in known:
                hint = _did_you_mean(key, known) if isinstance(key, str) else ""
                self.error(_key_pos(m, key), f"unknown element {_show(key)} in {where}{hint}")

    def mapping(self, m: dict[Any, Any], key: str) -> dict[Any, Any] | None:
        value = m.get(key)
        if value is None or isinstance(value, dict):
            return value
        self.error(_value_pos(m, key), f"{key!r} must be a mapping, not {_kind(value)}")
        return None

    def sequence(self, m: dict[Any, Any], key: str) -> list[Any] | None:
        value = m.get(key)
        if value is None or isinstance(value, list):
            return value
        self.error(_value_pos(m, key), f"{key!r} must be a list, not {_kind(value)}")
        return None

    def string(self, m: dict[Any, Any], key: str) -> str | None:
        """A scalar as text (``version: 1`` is ``"1"``); None when absent or null."""
        value = m.get(key)
        text = _as_text(value)
        if text is None and value is not None:
            self.error(_value_pos(m, key), f"{key!r} must be a string, not {_kind(value)}")
        return text

    def boolean(self, m: dict[Any, Any], key: str) -> bool | None:
        value = m.get(key)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        self.error(_value_pos(m, key), f"{key!r} must be true or false, not {_show(value)}")
        return None

    def choice(self, m: dict[Any, Any], key: str, choices: tuple[str, ...]) -> str | None:
        text = self.string(m, key)
        if text is None or text in choices:
            return text
        self.error(
            _value_pos(m, key),
            f"{key!r} must be one of {', '.join(choices)}; got {_show(text)}"
            + _did_you_mean(text, choices),
        )
        return None

    def number(
        self, m: dict[Any, Any], key: str, low: float, high: float, *, integer: bool
    ) -> float | None:
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
            self.error(_value_pos(m, key), f"{key!r} must be {what}, not {_show(value)}")
            return None
        if not low <= number <= high:  # written so that NaN fails too
            self.error(
                _value_pos(m, key),
                f"{key!r} must be between {low:g} and {high:g}; got {_show(value)}",
            )
            return None
        return number

    def integer(self, m: dict[Any, Any], key: str, low: int, high: int) -> int | None:
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
            self.error(_value_pos(m, key), f"{key!r}: {exc}")
            return False, None

    def regex(self, pos: _Pos, what: str, pattern: str) -> re.Pattern[str] | None:
        compiled, reason = _compile(pattern)
        if compiled is None:
            self.error(pos, f"{what} {_show(pattern)} is not a valid regular expression: {reason}")
        return compiled

    def service_id(self, m: dict[Any, Any], key: str, what: str = "service") -> str | None:
        text = self.string(m, key)
        if text is not None and not _SERVICE_ID.fullmatch(text):
            self.error(
                _value_pos(m, key),
                f"{what} id {_show(text)} must be 1-63 lowercase letters, digits and '-', "
                "not starting or ending with '-'",
            )
        return text


def _as_text(value: object) -> str | None:
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


def _text_pos(text: str, index: int) -> _Pos:
    before = text[:index]
    return before.count("\n") + 1, index - before.rfind("\n")


def _parse(f: _File) -> tuple[bool, Any]:
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


def _locate(path: str | Path, name: str) -> tuple[Path, str]:
    """(absolute file, display) for a directory (holding ``name``) or a yaml file."""
    given = Path(path)
    try:
        if given.is_dir():
            given = given / name
        # The directory is resolved, not the file: a symlinked app.yaml keeps its app.
        return given.parent.resolve() / given.name, str(given)
    except (OSError, RuntimeError, ValueError):
        return given.absolute(), str(given)


# --------------------------------------------------------------------------- handlers


@dataclass(slots=True)
class _Parts:
    """What a file and its includes contribute (CFG-4)."""

    handlers: list[Handler] = field(default_factory=list)
    cgi_scripts: list[tuple[str, Position]] = field(default_factory=list)
    skip_files: list[str] | None = None  # the file's own; None: it has none
    included_skip_files: list[str] = field(default_factory=list)  # from its includes
    env: dict[str, str] = field(default_factory=dict)
    ignored: list[tuple[str, Position]] = field(default_factory=list)
    manual_scaling: ManualScaling | None = None


def _read_handler(f: _File, m: dict[Any, Any], pos: _Pos, parts: _Parts) -> None:
    f.check_keys(m, HANDLER_KEYS, "a handler")
    url = f.string(m, "url")
    if url is None:
        f.error(pos, "handler has no 'url'")
    kinds = [k for k in _HANDLER_KINDS if k in m]
    if not kinds:
        f.error(pos, "handler needs one of 'script', 'static_dir' or 'static_files'")
    for extra in kinds[1:]:
        f.error(_key_pos(m, extra), f"handler has both {kinds[0]!r} and {extra!r}; give one")
    if len(kinds) == 1:
        allowed = _HANDLER_COMMON | _HANDLER_ALLOWED[kinds[0]]
        for key in m:
            if key in HANDLER_KEYS and key not in allowed:
                f.error(_key_pos(m, key), f"{key!r} is not allowed in a {kinds[0]} handler")
    for key in ("position", "api_endpoint"):
        if key in m:
            parts.ignored.append((key, f.position(_key_pos(m, key))))

    targets = {k: f.string(m, k) for k in _HANDLER_KINDS}
    for key, target in targets.items():
        if key in m and target is None and m.get(key) is None:
            f.error(_value_pos(m, key), f"{key!r} has no value")
    compiled = None
    if url is not None:
        if not url.startswith("/"):
            f.error(_value_pos(m, "url"), f"url {_show(url)} must start with '/'")
        compiled = f.regex(_value_pos(m, "url"), "url", url)
    if compiled is not None:
        if targets["static_dir"] is not None and compiled.groups:
            f.error(_value_pos(m, "url"), "a static_dir url is a prefix and may not have groups")
        for key in ("script", "static_files"):
            target = targets[key]
            refs = [int(n) for n in _BACKREF.findall(target or "")]
            if refs and max(refs) > compiled.groups:
                f.error(_value_pos(m, key), f"{key!r} refers to \\{max(refs)} but url has "
                        f"only {compiled.groups} group(s)")
    upload = f.string(m, "upload")
    if upload is not None:
        f.regex(_value_pos(m, "upload"), "upload", upload)
    if "static_files" in m and upload is None:
        f.error(_key_pos(m, "static_files"), "a static_files handler needs an 'upload' regex")

    mime_type = f.string(m, "mime_type")
    headers = _read_headers(f, m, mime_type)
    _ok, expiration = f.duration(m, "expiration", parse_expiration)
    code = _read_redirect_code(f, m)
    handler = Handler(
        url=url or "",
        script=targets["script"],
        static_dir=targets["static_dir"],
        static_files=targets["static_files"],
        upload=upload,
        mime_type=mime_type,
        expiration=expiration,
        http_headers=headers,
        secure=cast(Any, f.choice(m, "secure", ("optional", "always", "never")) or "optional"),
        login=cast(Any, f.choice(m, "login", ("optional", "required", "admin")) or "optional"),
        auth_fail_action=cast(
            Any, f.choice(m, "auth_fail_action", ("redirect", "unauthorized")) or "redirect"
        ),
        redirect_http_response_code=code,
        require_matching_file=bool(f.boolean(m, "require_matching_file")),
        application_readable=bool(f.boolean(m, "application_readable")),
        position=f.position(pos),
    )
    f.choice(m, "position", ("head", "tail"))
    f.boolean(m, "api_endpoint")
    parts.handlers.append(handler)
    if handler.script is not None and handler.script.endswith(".py"):
        parts.cgi_scripts.append((handler.script, f.position(_value_pos(m, "script"))))


def _read_redirect_code(f: _File, m: dict[Any, Any]) -> int:
    value = m.get("redirect_http_response_code")
    if value is None:
        return 302  # SPEC SEC-1 default
    text = _as_text(value)
    if text is not None and text.strip() in {str(c) for c in _REDIRECT_CODES}:
        return int(text)
    f.error(
        _value_pos(m, "redirect_http_response_code"),
        f"'redirect_http_response_code' must be one of 301, 302, 303, 307; got {_show(value)}",
    )
    return 302


def _read_headers(
    f: _File, m: dict[Any, Any], mime_type: str | None
) -> tuple[tuple[str, str], ...]:
    headers = f.mapping(m, "http_headers")
    if headers is None:
        return ()
    result: list[tuple[str, str]] = []
    for name, value in headers.items():
        pos = _key_pos(headers, name)
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            f.error(pos, f"http_headers name {_show(name)} is not a valid header name")
            continue
        lower = name.lower()
        if lower in _FORBIDDEN_HEADERS or lower.startswith("x-appengine-"):
            f.error(pos, f"http_headers may not set {name!r}; App Engine sets it")
        elif lower == "content-type" and mime_type is not None:
            f.error(pos, "give either 'mime_type' or an http_headers Content-Type, not both")
        text = _as_text(value)
        if text is None:
            f.error(_value_pos(headers, name), f"header {name!r} needs a string value, "
                    f"not {_kind(value)}")
        elif _CONTROL.search(text):
            f.error(_value_pos(headers, name), f"header {name!r} has control characters")
        else:
            result.append((name, text))
    return tuple(result)


# --------------------------------------------------------------------------- elements


def _read_string_list(f: _File, m: dict[Any, Any], key: str) -> list[tuple[str, _Pos]]:
    items = f.sequence(m, key) or []
    result: list[tuple[str, _Pos]] = []
    for i, item in enumerate(items):
        text = _as_text(item)
        if text is None:
            f.error(_item_pos(items, i), f"{key!r} entries must be strings, not {_kind(item)}")
        else:
            result.append((text, _item_pos(items, i)))
    return result


def _read_skip_files(f: _File, m: dict[Any, Any]) -> list[str] | None:
    """SPEC CFG-5: one regex or a list of them; None when the file has none."""
    value = m.get("skip_files")
    if value is None:
        return None
    if isinstance(value, list):
        patterns = _read_string_list(f, m, "skip_files")
    elif isinstance(value, str):
        patterns = [(str(value), _value_pos(m, "skip_files"))]
    else:
        f.error(_value_pos(m, "skip_files"), f"'skip_files' must be a regex or a list of "
                f"regexes, not {_kind(value)}")
        return None
    for pattern, pos in patterns:
        f.regex(pos, "skip_files entry", pattern)
    return [pattern for pattern, _pos in patterns]


def _read_env(f: _File, m: dict[Any, Any]) -> dict[str, str]:
    env = f.mapping(m, "env_variables") or {}
    result: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            f.error(_key_pos(env, name), f"env_variables name {_show(name)} is not a valid "
                    "name ([A-Za-z_][A-Za-z0-9_]*)")
            continue
        if name.startswith("GAE"):
            f.error(_key_pos(env, name), f"env_variables may not set {name!r}: names "
                    "starting with GAE are reserved for App Engine")
        # App Engine turns YAML scalars into text with Python's str(): `true` -> "True".
        text = str(value) if isinstance(value, bool) else _as_text(value)
        if text is None:
            f.error(_value_pos(env, name), f"env_variables {name!r} needs a string value, "
                    f"not {_kind(value)}")
        else:
            result[name] = text
    return result


def _scaling_mapping(f: _File, m: dict[Any, Any], key: str, known: Collection[str]) -> Any:
    value = f.mapping(m, key)
    if value is None:
        return {}
    f.check_keys(value, known, key)
    return value


def _read_automatic(f: _File, m: dict[Any, Any]) -> AutomaticScaling:
    a = _scaling_mapping(f, m, "automatic_scaling", _AUTOMATIC_KEYS)
    kw: dict[str, Any] = {}
    for key in ("target_cpu_utilization", "target_throughput_utilization"):
        kw[key] = f.number(a, key, 0.5, 0.95, integer=False)  # SPEC CFG-2
    kw["max_concurrent_requests"] = f.integer(a, "max_concurrent_requests", 1, 1000)
    kw["min_instances"] = f.integer(a, "min_instances", 0, 1000)
    # app.yaml reference: max_instances 0 switches the limit off.
    kw["max_instances"] = f.integer(a, "max_instances", 0, 2147483647) or None
    for key, top in (("min_idle_instances", 1000), ("max_idle_instances", 2147483647)):
        if _as_text(a.get(key)) != "automatic":  # automatic: the dataclass default
            kw[key] = f.integer(a, key, 0, top)
    for key in ("min_pending_latency", "max_pending_latency"):
        kw[key] = f.duration(a, key, parse_latency)[1]
    pairs = (("min_instances", "max_instances"), ("min_idle_instances", "max_idle_instances"),
             ("min_pending_latency", "max_pending_latency"))
    for low_key, high_key in pairs:
        lower, upper = kw.get(low_key), kw.get(high_key)
        if lower is not None and upper is not None and lower > upper:
            f.error(_value_pos(a, low_key), f"{low_key!r} is greater than {high_key!r}")
    return AutomaticScaling(**{k: v for k, v in kw.items() if v is not None})


def _read_basic(f: _File, m: dict[Any, Any]) -> BasicScaling:
    b = _scaling_mapping(f, m, "basic_scaling", ("max_instances", "idle_timeout"))
    if b.get("max_instances") is None:
        f.error(_value_pos(m, "basic_scaling"), "basic_scaling needs 'max_instances'")
    kw: dict[str, Any] = {"max_instances": f.integer(b, "max_instances", 1, 2147483647)}
    kw["idle_timeout"] = f.duration(b, "idle_timeout", parse_idle_timeout)[1]
    return BasicScaling(**{k: v for k, v in kw.items() if v is not None})


def _read_manual(f: _File, m: dict[Any, Any]) -> ManualScaling:
    s = _scaling_mapping(f, m, "manual_scaling", ("instances",))
    if s.get("instances") is None:
        f.error(_value_pos(m, "manual_scaling"), "manual_scaling needs 'instances'")
    instances = f.integer(s, "instances", 1, 2147483647)
    return ManualScaling(instances=instances or 1)


def _read_scaling(f: _File, m: dict[Any, Any], parts: _Parts) -> Scaling:
    given = [key for key in _SCALING_ELEMENTS if key in m]
    for extra in given[1:]:
        f.error(_key_pos(m, extra), f"only one scaling element may be given; {given[0]!r} "
                f"is already set")
    if not given:
        return parts.manual_scaling or AutomaticScaling()
    readers: dict[str, Callable[[_File, dict[Any, Any]], Scaling]] = {
        "automatic_scaling": _read_automatic,
        "basic_scaling": _read_basic,
        "manual_scaling": _read_manual,
    }
    return readers[given[0]](f, m)


def _read_error_handlers(f: _File, m: dict[Any, Any], root: Path) -> tuple[ErrorHandler, ...]:
    items = f.sequence(m, "error_handlers") or []
    result: list[ErrorHandler] = []
    codes: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            f.error(_item_pos(items, i), f"an error handler must be a mapping with a 'file', "
                    f"not {_kind(item)}")
            continue
        f.check_keys(item, ("file", "error_code", "mime_type"), "an error handler")
        pos = _node_pos(item) if item else _item_pos(items, i)
        file = f.string(item, "file")
        if file is None:
            f.error(pos, "error handler has no 'file'")
        else:
            _check_error_file(f, root, file, _value_pos(item, "file"))
        code = f.choice(item, "error_code", _ERROR_CODES) or "default"
        if code in codes:
            f.error(pos, f"a second error handler for error_code {code!r}")
        codes.add(code)
        result.append(ErrorHandler(file=file or "", error_code=cast(Any, code),
                                   mime_type=f.string(item, "mime_type") or "text/html"))
    return tuple(result)


def _check_error_file(f: _File, root: Path, file: str, pos: _Pos) -> None:
    """SPEC CFG-2: the file exists in the app directory and is under 10 KB."""
    try:
        target = (root / file).resolve()
        inside = target.is_relative_to(root)
        size = target.stat().st_size if inside and target.is_file() else None
    except (OSError, RuntimeError, ValueError):
        inside, size = True, None
    if not inside:
        f.error(pos, f"error handler file {_show(file)} is outside the app directory")
    elif size is None:
        f.error(pos, f"error handler file {_show(file)} not found in {root}")
    elif size >= MAX_ERROR_FILE_BYTES:
        f.error(pos, f"error handler file {_show(file)} is {size} bytes; it must be under "
                f"{MAX_ERROR_FILE_BYTES} bytes (10 KB)")


# --------------------------------------------------------------------------- loader


class _Loader:
    """Reads one app.yaml and, depth first, its includes (SPEC CFG-4)."""

    def __init__(self, main: _File) -> None:
        self.main = main
        self.root = main.path.parent
        self.root_display = str(Path(main.display).parent)
        self.stack: list[_File] = []
        self.seen: set[Path] = {main.path}

    def read_parts(self, f: _File, m: dict[Any, Any]) -> _Parts:
        """handlers, skip_files, env_variables of ``f``, then those of its includes."""
        parts = _Parts()
        for key in m:
            if key in IGNORED_ELEMENTS:
                parts.ignored.append((key, f.position(_key_pos(m, key))))
        for key in ("builtins", "libraries"):
            for i, item in enumerate(f.sequence(m, key) or []):
                if not isinstance(item, dict):
                    f.error(_item_pos(m[key], i), f"{key!r} entries must be mappings, "
                            f"not {_kind(item)}")
        handlers = f.sequence(m, "handlers") or []
        for i, item in enumerate(handlers):
            if isinstance(item, dict):
                _read_handler(f, item, _node_pos(item) if item else _item_pos(handlers, i), parts)
            else:
                f.error(_item_pos(handlers, i), f"a handler must be a mapping with a 'url', "
                        f"not {_kind(item)}")
        parts.skip_files = _read_skip_files(f, m)
        parts.env = _read_env(f, m)
        if f is not self.main and "manual_scaling" in m:
            parts.manual_scaling = _read_manual(f, m)
        self.stack.append(f)
        for include, pos in _read_string_list(f, m, "includes"):
            child = self.resolve(f, include, pos)
            if child is None:
                continue
            paths = [s.path for s in self.stack]
            if child.path in paths:
                cycle = [s.display for s in self.stack[paths.index(child.path):]]
                f.error(pos, f"include cycle: {' -> '.join([*cycle, child.display])}")
            elif child.path not in self.seen:  # included twice: its handlers count once
                self.seen.add(child.path)
                self.merge(parts, self.read_include(child))
        self.stack.pop()
        return parts

    def resolve(self, f: _File, include: str, pos: _Pos) -> _File | None:
        """SPEC CFG-4: relative to the including file, then to the app directory."""
        given = Path(include)
        bases = [(f.path.parent, str(Path(f.display).parent)), (self.root, self.root_display)]
        if given.is_absolute():
            bases = [(Path("/"), "/")]
        for base, shown in bases:
            candidate, display = base / given, os.path.normpath(Path(shown) / given)
            try:
                if candidate.is_dir():
                    candidate, display = candidate / "include.yaml", display + "/include.yaml"
                if candidate.is_file():
                    return _File(display, candidate.resolve(), f.sink)
            except (OSError, RuntimeError, ValueError):
                continue
        f.error(pos, f"include {_show(include)} not found next to {f.display} nor in the "
                "app directory")
        return None

    def read_include(self, f: _File) -> _Parts:
        ok, doc = _parse(f)
        if not ok or doc is None:
            return _Parts()
        if not isinstance(doc, dict):
            f.error(_node_pos(doc), f"an included file must be a mapping, not {_kind(doc)}")
            return _Parts()
        f.check_keys(doc, INCLUDE_ELEMENTS, "an included file")
        return self.read_parts(f, doc)

    @staticmethod
    def merge(into: _Parts, child: _Parts) -> None:
        """SPEC CFG-4: included handlers after the includer's; the includer's env wins."""
        into.handlers.extend(child.handlers)
        into.cgi_scripts.extend(child.cgi_scripts)
        into.included_skip_files.extend([*(child.skip_files or ()),
                                         *child.included_skip_files])
        for name, value in child.env.items():
            into.env.setdefault(name, value)
        into.ignored.extend(child.ignored)
        into.manual_scaling = into.manual_scaling or child.manual_scaling

    def build(self, m: dict[Any, Any]) -> AppConfig:
        """The app file's own elements, then the rules that span elements."""
        f = self.main
        f.check_keys(m, APP_ELEMENTS | IGNORED_ELEMENTS, "app.yaml")
        parts = self.read_parts(f, m)
        runtime = f.string(m, "runtime")
        if runtime is None and m.get("runtime") is None:
            where = _key_pos(m, "runtime") if "runtime" in m else _node_pos(m)
            f.error(where, "'runtime' is required (for example 'runtime: python312')")
        service_key = "module" if "module" in m and "service" not in m else "service"
        if "service" in m and "module" in m:
            f.error(_key_pos(m, "module"), "give 'service' or the older 'module', not both")
        service = f.service_id(m, service_key)
        version = f.service_id(m, "version", "version")
        if version is not None and (version.startswith("ah-") or version in ("default",
                                                                             "latest")):
            f.error(_value_pos(m, "version"), f"version id {version!r} is reserved (no 'ah-' "
                    "prefix, not 'default' or 'latest')")
        scaling = _read_scaling(f, m, parts)
        instance_class = f.choice(m, "instance_class", tuple(MEMORY_MB_GEN2))
        if instance_class is not None and (instance_class.startswith("F")
                                           != isinstance(scaling, AutomaticScaling)):
            f.error(_value_pos(m, "instance_class"), f"instance_class {instance_class} needs "
                    + ("automatic scaling" if instance_class.startswith("F")
                       else "basic_scaling or manual_scaling"))
        inbound = _read_string_list(f, m, "inbound_services")
        for name, pos in inbound:
            if name not in _INBOUND_SERVICES:
                f.error(pos, f"unknown inbound service {name!r}"
                        + _did_you_mean(name, _INBOUND_SERVICES))
        skip_files = DEFAULT_SKIP_FILES if parts.skip_files is None else parts.skip_files
        config = AppConfig(
            path=f.path,
            root=self.root,
            runtime=runtime or "",
            api_version=f.string(m, "api_version"),
            threadsafe=f.boolean(m, "threadsafe"),
            service=service or "default",
            version=version,
            application=f.string(m, "application"),
            entrypoint=f.string(m, "entrypoint"),
            instance_class=instance_class,
            env_variables=tuple(parts.env.items()),
            handlers=tuple(parts.handlers),
            error_handlers=_read_error_handlers(f, m, self.root),
            default_expiration=f.duration(m, "default_expiration", parse_expiration)[1],
            inbound_services=tuple(name for name, _pos in inbound),
            skip_files=(*skip_files, *parts.included_skip_files),
            scaling=scaling,
            ignored=tuple(parts.ignored),
        )
        return self.check_generation(config, m, parts)

    def check_generation(self, config: AppConfig, m: dict[Any, Any], parts: _Parts) -> AppConfig:
        f = self.main
        if len(config.handlers) > MAX_HANDLERS:
            extra = config.handlers[MAX_HANDLERS].position or f.position((1, 1))
            f.sink.add(extra.file, (extra.line, extra.column), f"{len(config.handlers)} "
                       f"handlers; at most {MAX_HANDLERS} are allowed")
        if not config.runtime or config.generation == 2:
            if not config.handlers:
                # Gen2 without handlers sends every request to the app: `script: auto`.
                return dataclasses.replace(config, handlers=(Handler(url="/.*", script="auto"),))
            return config
        where = _value_pos(m, "runtime")
        if config.threadsafe is None:
            f.error(where, f"runtime {config.runtime} requires 'threadsafe: true' or "
                    "'threadsafe: false'")
        if not config.handlers:
            f.error(where, f"runtime {config.runtime} requires at least one handler")
        if config.threadsafe:
            for script, pos in parts.cgi_scripts:
                f.sink.add(pos.file, (pos.line, pos.column), f"threadsafe: true cannot be "
                           f"used with the CGI script {script!r}; name a WSGI app such as "
                           "'main.app'")
        return config


# --------------------------------------------------------------------------- public API


def load_app(path: str | Path) -> AppConfig:
    """Load an app directory (its ``app.yaml``) or a yaml file, with includes merged.

    Raises ``ConfigError`` carrying every problem found; nothing else escapes.
    """
    sink = _Sink()
    file, display = _locate(path, "app.yaml")
    main = _File(display, file, sink)
    ok, doc = _parse(main)
    config = None
    if ok and isinstance(doc, dict):
        config = _Loader(main).build(doc)
    elif ok:
        what = "empty" if doc is None else f"{_kind(doc)}, not a mapping of elements"
        main.error(_node_pos(doc), f"app.yaml is {what}; it needs at least 'runtime'")
    sink.raise_if_any()
    assert config is not None  # every path without a config recorded a problem
    return config


def load_dispatch(path: str | Path) -> tuple[DispatchRule, ...]:
    """Load a ``dispatch.yaml`` (or a directory holding one): rules in match order (ROUTE-5).

    Raises ``ConfigError`` carrying every problem found; nothing else escapes.
    """
    sink = _Sink()
    file, display = _locate(path, "dispatch.yaml")
    f = _File(display, file, sink)
    ok, doc = _parse(f)
    rules: list[DispatchRule] = []
    if ok and not isinstance(doc, dict):
        f.error(_node_pos(doc), "dispatch.yaml must be a mapping with a 'dispatch' list")
    elif ok:
        f.check_keys(doc, ("dispatch", "application"), "dispatch.yaml")
        if doc.get("dispatch") is None:
            f.error(_node_pos(doc), "dispatch.yaml needs a 'dispatch' list")
        items = f.sequence(doc, "dispatch") or []
        if len(items) > MAX_DISPATCH_RULES:
            f.error(_item_pos(items, MAX_DISPATCH_RULES), f"{len(items)} dispatch rules; at "
                    f"most {MAX_DISPATCH_RULES} are allowed")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                f.error(_item_pos(items, i), f"a dispatch rule must be a mapping with 'url' "
                        f"and 'service', not {_kind(item)}")
                continue
            rule = _read_dispatch_rule(f, item, _node_pos(item) if item else _item_pos(items, i))
            if rule is not None:
                rules.append(rule)
    sink.raise_if_any()
    return tuple(rules)


def _read_dispatch_rule(f: _File, m: dict[Any, Any], pos: _Pos) -> DispatchRule | None:
    f.check_keys(m, ("url", "service"), "a dispatch rule")
    url, service = f.string(m, "url"), f.service_id(m, "service")
    for key, value in (("url", url), ("service", service)):
        if value is None and m.get(key) is None:
            f.error(pos, f"dispatch rule has no {key!r}")
    if url is not None:
        reason = _dispatch_url_problem(url)
        if reason:
            f.error(_value_pos(m, "url"), f"dispatch url {_show(url)}: {reason}")
    if url is None or service is None:
        return None
    return DispatchRule(url=url, service=service, position=f.position(pos))


def _dispatch_url_problem(url: str) -> str:
    """SPEC ROUTE-5: ``host/path``, ``*`` only as a host prefix or a path suffix."""
    if len(url) > 100:
        return "longer than 100 characters"
    host, slash, path = url.partition("/")
    if not slash or not host:
        return "must be <host>/<path>, like '*/api/*' or 'example.com/'"
    if not _DISPATCH_HOST.fullmatch(host):
        return ("the host may have lowercase letters, digits, '-' and '.', and '*' only at "
                "its start")
    if "*" in path[:-1]:
        return "'*' may only end the path"
    return ""
