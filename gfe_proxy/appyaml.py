"""app.yaml text -> frozen config values (SPEC CFG-1 … CFG-5); re-exports ``load_dispatch``.

With ``yamlnodes`` (which reads the files and alone imports ruamel.yaml) and ``dispatchyaml``,
one of the only modules touching ruamel. Its round-trip loader keeps the line and column of
every key and value, so each problem names ``file:line:col``. Loading never stops at the first
problem: every element is checked and all problems are raised together in one ``ConfigError``.
Nothing else escapes: unreadable files, bad encodings and YAML syntax errors become problems too.

Theory of operation: ``_Loader`` reads the app file and, depth first, its ``includes`` (CFG-4),
collecting handlers, ``skip_files`` and ``env_variables`` into ``_Parts``; the app-only elements
are read from the app file alone; cross-element rules (runtime generation, threadsafe, scaling)
run last, on the merged result. dispatch.yaml (ROUTE-5) is read by ``dispatchyaml``; it is
re-exported here so that callers load both files from one place.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from gfe_proxy.config import (
    DEFAULT_SKIP_FILES,
    MEMORY_MB_GEN2,
    AppConfig,
    AutomaticScaling,
    BasicScaling,
    ErrorHandler,
    Handler,
    ManualScaling,
    Position,
    Scaling,
)
from gfe_proxy.dispatchyaml import load_dispatch
from gfe_proxy.durations import parse_expiration, parse_idle_timeout, parse_latency
from gfe_proxy.yamlnodes import (
    Pos,
    Sink,
    YamlFile,
    as_text,
    did_you_mean,
    item_pos,
    key_pos,
    kind,
    locate,
    node_pos,
    parse_yaml,
    show,
    value_pos,
)

__all__ = ["load_app", "load_dispatch"]

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

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BACKREF = re.compile(r"\\(\d)")
# SPEC CFG-2: headers a static handler may not set; App Engine owns them.
_FORBIDDEN_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade",
    "content-length", "content-encoding", "date", "server",
})


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


def _read_handler(f: YamlFile, m: dict[Any, Any], pos: Pos, parts: _Parts) -> None:
    f.check_keys(m, HANDLER_KEYS, "a handler")
    url = f.string(m, "url")
    if url is None:
        f.error(pos, "handler has no 'url'")
    kinds = [k for k in _HANDLER_KINDS if k in m]
    if not kinds:
        f.error(pos, "handler needs one of 'script', 'static_dir' or 'static_files'")
    for extra in kinds[1:]:
        f.error(key_pos(m, extra), f"handler has both {kinds[0]!r} and {extra!r}; give one")
    if len(kinds) == 1:
        allowed = _HANDLER_COMMON | _HANDLER_ALLOWED[kinds[0]]
        for key in m:
            if key in HANDLER_KEYS and key not in allowed:
                f.error(key_pos(m, key), f"{key!r} is not allowed in a {kinds[0]} handler")
    for key in ("position", "api_endpoint"):
        if key in m:
            parts.ignored.append((key, f.position(key_pos(m, key))))

    targets = {k: f.string(m, k) for k in _HANDLER_KINDS}
    for key, target in targets.items():
        if key in m and target is None and m.get(key) is None:
            f.error(value_pos(m, key), f"{key!r} has no value")
    compiled = None
    if url is not None:
        if not url.startswith("/"):
            f.error(value_pos(m, "url"), f"url {show(url)} must start with '/'")
        compiled = f.regex(value_pos(m, "url"), "url", url)
    if compiled is not None:
        if targets["static_dir"] is not None and compiled.groups:
            f.error(value_pos(m, "url"), "a static_dir url is a prefix and may not have groups")
        for key in ("script", "static_files"):
            target = targets[key]
            refs = [int(n) for n in _BACKREF.findall(target or "")]
            if refs and max(refs) > compiled.groups:
                f.error(value_pos(m, key), f"{key!r} refers to \\{max(refs)} but url has "
                        f"only {compiled.groups} group(s)")
    upload = f.string(m, "upload")
    if upload is not None:
        f.regex(value_pos(m, "upload"), "upload", upload)
    if "static_files" in m and upload is None:
        f.error(key_pos(m, "static_files"), "a static_files handler needs an 'upload' regex")

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
        parts.cgi_scripts.append((handler.script, f.position(value_pos(m, "script"))))


def _read_redirect_code(f: YamlFile, m: dict[Any, Any]) -> int:
    value = m.get("redirect_http_response_code")
    if value is None:
        return 302  # SPEC SEC-1 default
    text = as_text(value)
    if text is not None and text.strip() in {str(c) for c in _REDIRECT_CODES}:
        return int(text)
    f.error(
        value_pos(m, "redirect_http_response_code"),
        f"'redirect_http_response_code' must be one of 301, 302, 303, 307; got {show(value)}",
    )
    return 302


def _read_headers(
    f: YamlFile, m: dict[Any, Any], mime_type: str | None
) -> tuple[tuple[str, str], ...]:
    headers = f.mapping(m, "http_headers")
    if headers is None:
        return ()
    result: list[tuple[str, str]] = []
    for name, value in headers.items():
        pos = key_pos(headers, name)
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            f.error(pos, f"http_headers name {show(name)} is not a valid header name")
            continue
        lower = name.lower()
        if lower in _FORBIDDEN_HEADERS or lower.startswith("x-appengine-"):
            f.error(pos, f"http_headers may not set {name!r}; App Engine sets it")
        elif lower == "content-type" and mime_type is not None:
            f.error(pos, "give either 'mime_type' or an http_headers Content-Type, not both")
        text = as_text(value)
        if text is None:
            f.error(value_pos(headers, name), f"header {name!r} needs a string value, "
                    f"not {kind(value)}")
        elif _CONTROL.search(text):
            f.error(value_pos(headers, name), f"header {name!r} has control characters")
        else:
            result.append((name, text))
    return tuple(result)


# --------------------------------------------------------------------------- elements


def _read_skip_files(f: YamlFile, m: dict[Any, Any]) -> list[str] | None:
    """SPEC CFG-5: one regex or a list of them; None when the file has none."""
    value = m.get("skip_files")
    if value is None:
        return None
    if isinstance(value, list):
        patterns = f.string_list(m, "skip_files")
    elif isinstance(value, str):
        patterns = [(str(value), value_pos(m, "skip_files"))]
    else:
        f.error(value_pos(m, "skip_files"), f"'skip_files' must be a regex or a list of "
                f"regexes, not {kind(value)}")
        return None
    for pattern, pos in patterns:
        f.regex(pos, "skip_files entry", pattern)
    return [pattern for pattern, _pos in patterns]


def _read_env(f: YamlFile, m: dict[Any, Any]) -> dict[str, str]:
    env = f.mapping(m, "env_variables") or {}
    result: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            f.error(key_pos(env, name), f"env_variables name {show(name)} is not a valid "
                    "name ([A-Za-z_][A-Za-z0-9_]*)")
            continue
        if name.startswith("GAE"):
            f.error(key_pos(env, name), f"env_variables may not set {name!r}: names "
                    "starting with GAE are reserved for App Engine")
        # App Engine turns YAML scalars into text with Python's str(): `true` -> "True".
        text = str(value) if isinstance(value, bool) else as_text(value)
        if text is None:
            f.error(value_pos(env, name), f"env_variables {name!r} needs a string value, "
                    f"not {kind(value)}")
        else:
            result[name] = text
    return result


def _scaling_mapping(f: YamlFile, m: dict[Any, Any], key: str, known: Collection[str]) -> Any:
    value = f.mapping(m, key)
    if value is None:
        return {}
    f.check_keys(value, known, key)
    return value


def _read_automatic(f: YamlFile, m: dict[Any, Any]) -> AutomaticScaling:
    a = _scaling_mapping(f, m, "automatic_scaling", _AUTOMATIC_KEYS)
    kw: dict[str, Any] = {}
    for key in ("target_cpu_utilization", "target_throughput_utilization"):
        kw[key] = f.number(a, key, 0.5, 0.95, integer=False)  # SPEC CFG-2
    kw["max_concurrent_requests"] = f.integer(a, "max_concurrent_requests", 1, 1000)
    kw["min_instances"] = f.integer(a, "min_instances", 0, 1000)
    # app.yaml reference: max_instances 0 switches the limit off.
    kw["max_instances"] = f.integer(a, "max_instances", 0, 2147483647) or None
    for key, top in (("min_idle_instances", 1000), ("max_idle_instances", 2147483647)):
        if as_text(a.get(key)) != "automatic":  # automatic: the dataclass default
            kw[key] = f.integer(a, key, 0, top)
    for key in ("min_pending_latency", "max_pending_latency"):
        kw[key] = f.duration(a, key, parse_latency)[1]
    pairs = (("min_instances", "max_instances"), ("min_idle_instances", "max_idle_instances"),
             ("min_pending_latency", "max_pending_latency"))
    for low_key, high_key in pairs:
        lower, upper = kw.get(low_key), kw.get(high_key)
        if lower is not None and upper is not None and lower > upper:
            f.error(value_pos(a, low_key), f"{low_key!r} is greater than {high_key!r}")
    return AutomaticScaling(**{k: v for k, v in kw.items() if v is not None})


def _read_basic(f: YamlFile, m: dict[Any, Any]) -> BasicScaling:
    b = _scaling_mapping(f, m, "basic_scaling", ("max_instances", "idle_timeout"))
    if b.get("max_instances") is None:
        f.error(value_pos(m, "basic_scaling"), "basic_scaling needs 'max_instances'")
    kw: dict[str, Any] = {"max_instances": f.integer(b, "max_instances", 1, 2147483647)}
    kw["idle_timeout"] = f.duration(b, "idle_timeout", parse_idle_timeout)[1]
    return BasicScaling(**{k: v for k, v in kw.items() if v is not None})


def _read_manual(f: YamlFile, m: dict[Any, Any]) -> ManualScaling:
    s = _scaling_mapping(f, m, "manual_scaling", ("instances",))
    if s.get("instances") is None:
        f.error(value_pos(m, "manual_scaling"), "manual_scaling needs 'instances'")
    instances = f.integer(s, "instances", 1, 2147483647)
    return ManualScaling(instances=instances or 1)


def _read_scaling(f: YamlFile, m: dict[Any, Any], parts: _Parts) -> Scaling:
    given = [key for key in _SCALING_ELEMENTS if key in m]
    for extra in given[1:]:
        f.error(key_pos(m, extra), f"only one scaling element may be given; {given[0]!r} "
                f"is already set")
    if not given:
        return parts.manual_scaling or AutomaticScaling()
    readers: dict[str, Callable[[YamlFile, dict[Any, Any]], Scaling]] = {
        "automatic_scaling": _read_automatic,
        "basic_scaling": _read_basic,
        "manual_scaling": _read_manual,
    }
    return readers[given[0]](f, m)


def _read_error_handlers(f: YamlFile, m: dict[Any, Any], root: Path) -> tuple[ErrorHandler, ...]:
    items = f.sequence(m, "error_handlers") or []
    result: list[ErrorHandler] = []
    codes: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            f.error(item_pos(items, i), f"an error handler must be a mapping with a 'file', "
                    f"not {kind(item)}")
            continue
        f.check_keys(item, ("file", "error_code", "mime_type"), "an error handler")
        pos = node_pos(item) if item else item_pos(items, i)
        file = f.string(item, "file")
        if file is None:
            f.error(pos, "error handler has no 'file'")
        else:
            _check_error_file(f, root, file, value_pos(item, "file"))
        code = f.choice(item, "error_code", _ERROR_CODES) or "default"
        if code in codes:
            f.error(pos, f"a second error handler for error_code {code!r}")
        codes.add(code)
        result.append(ErrorHandler(file=file or "", error_code=cast(Any, code),
                                   mime_type=f.string(item, "mime_type") or "text/html"))
    return tuple(result)


def _check_error_file(f: YamlFile, root: Path, file: str, pos: Pos) -> None:
    """SPEC CFG-2: the file exists in the app directory and is under 10 KB."""
    try:
        target = (root / file).resolve()
        inside = target.is_relative_to(root)
        size = target.stat().st_size if inside and target.is_file() else None
    except (OSError, RuntimeError, ValueError):
        inside, size = True, None
    if not inside:
        f.error(pos, f"error handler file {show(file)} is outside the app directory")
    elif size is None:
        f.error(pos, f"error handler file {show(file)} not found in {root}")
    elif size >= MAX_ERROR_FILE_BYTES:
        f.error(pos, f"error handler file {show(file)} is {size} bytes; it must be under "
                f"{MAX_ERROR_FILE_BYTES} bytes (10 KB)")


# --------------------------------------------------------------------------- loader


class _Loader:
    """Reads one app.yaml and, depth first, its includes (SPEC CFG-4)."""

    def __init__(self, main: YamlFile) -> None:
        self.main = main
        self.root = main.path.parent
        self.root_display = str(Path(main.display).parent)
        self.stack: list[YamlFile] = []
        self.seen: set[Path] = {main.path}

    def read_parts(self, f: YamlFile, m: dict[Any, Any]) -> _Parts:
        """handlers, skip_files, env_variables of ``f``, then those of its includes."""
        parts = _Parts()
        for key in m:
            if key in IGNORED_ELEMENTS:
                parts.ignored.append((key, f.position(key_pos(m, key))))
        for key in ("builtins", "libraries"):
            for i, item in enumerate(f.sequence(m, key) or []):
                if not isinstance(item, dict):
                    f.error(item_pos(m[key], i), f"{key!r} entries must be mappings, "
                            f"not {kind(item)}")
        handlers = f.sequence(m, "handlers") or []
        for i, item in enumerate(handlers):
            if isinstance(item, dict):
                _read_handler(f, item, node_pos(item) if item else item_pos(handlers, i), parts)
            else:
                f.error(item_pos(handlers, i), f"a handler must be a mapping with a 'url', "
                        f"not {kind(item)}")
        parts.skip_files = _read_skip_files(f, m)
        parts.env = _read_env(f, m)
        if f is not self.main and "manual_scaling" in m:
            parts.manual_scaling = _read_manual(f, m)
        self.stack.append(f)
        for include, pos in f.string_list(m, "includes"):
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

    def resolve(self, f: YamlFile, include: str, pos: Pos) -> YamlFile | None:
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
                    return YamlFile(display, candidate.resolve(), f.sink)
            except (OSError, RuntimeError, ValueError):
                continue
        f.error(pos, f"include {show(include)} not found next to {f.display} nor in the "
                "app directory")
        return None

    def read_include(self, f: YamlFile) -> _Parts:
        ok, doc = parse_yaml(f)
        if not ok or doc is None:
            return _Parts()
        if not isinstance(doc, dict):
            f.error(node_pos(doc), f"an included file must be a mapping, not {kind(doc)}")
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
            where = key_pos(m, "runtime") if "runtime" in m else node_pos(m)
            f.error(where, "'runtime' is required (for example 'runtime: python312')")
        service_key = "module" if "module" in m and "service" not in m else "service"
        if "service" in m and "module" in m:
            f.error(key_pos(m, "module"), "give 'service' or the older 'module', not both")
        service = f.service_id(m, service_key)
        version = f.service_id(m, "version", "version")
        if version is not None and (version.startswith("ah-") or version in ("default",
                                                                             "latest")):
            f.error(value_pos(m, "version"), f"version id {version!r} is reserved (no 'ah-' "
                    "prefix, not 'default' or 'latest')")
        scaling = _read_scaling(f, m, parts)
        instance_class = f.choice(m, "instance_class", tuple(MEMORY_MB_GEN2))
        if instance_class is not None and (instance_class.startswith("F")
                                           != isinstance(scaling, AutomaticScaling)):
            f.error(value_pos(m, "instance_class"), f"instance_class {instance_class} needs "
                    + ("automatic scaling" if instance_class.startswith("F")
                       else "basic_scaling or manual_scaling"))
        inbound = f.string_list(m, "inbound_services")
        for name, pos in inbound:
            if name not in _INBOUND_SERVICES:
                f.error(pos, f"unknown inbound service {name!r}"
                        + did_you_mean(name, _INBOUND_SERVICES))
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
        where = value_pos(m, "runtime")
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
    sink = Sink()
    file, display = locate(path, "app.yaml")
    main = YamlFile(display, file, sink)
    ok, doc = parse_yaml(main)
    config = None
    if ok and isinstance(doc, dict):
        config = _Loader(main).build(doc)
    elif ok:
        what = "empty" if doc is None else f"{kind(doc)}, not a mapping of elements"
        main.error(node_pos(doc), f"app.yaml is {what}; it needs at least 'runtime'")
    sink.raise_if_any()
    assert config is not None  # every path without a config recorded a problem
    return config
