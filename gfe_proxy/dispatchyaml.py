"""dispatch.yaml text -> dispatch rules in match order (SPEC ROUTE-5).

With ``yamlnodes`` and ``appyaml``, one of the only modules touching ruamel: the document comes
from ``yamlnodes.parse_yaml`` with every node's position, so each problem names
``file:line:col``. Every rule is checked and all problems are raised together in one
``ConfigError``; nothing else escapes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gfe_proxy.config import DispatchRule
from gfe_proxy.yamlnodes import (
    Pos,
    Sink,
    YamlFile,
    item_pos,
    kind,
    locate,
    node_pos,
    parse_yaml,
    show,
    value_pos,
)

__all__ = ["MAX_DISPATCH_RULES", "load_dispatch"]

MAX_DISPATCH_RULES = 20  # SPEC ROUTE-5
_DISPATCH_HOST = re.compile(r"\*?[a-z0-9.-]*", re.ASCII)


def load_dispatch(path: str | Path) -> tuple[DispatchRule, ...]:
    """Load a ``dispatch.yaml`` (or a directory holding one): rules in match order (ROUTE-5).

    Raises ``ConfigError`` carrying every problem found; nothing else escapes.
    """
    sink = Sink()
    file, display = locate(path, "dispatch.yaml")
    f = YamlFile(display, file, sink)
    ok, doc = parse_yaml(f)
    rules: list[DispatchRule] = []
    if ok and not isinstance(doc, dict):
        f.error(node_pos(doc), "dispatch.yaml must be a mapping with a 'dispatch' list")
    elif ok:
        f.check_keys(doc, ("dispatch", "application"), "dispatch.yaml")
        if doc.get("dispatch") is None:
            f.error(node_pos(doc), "dispatch.yaml needs a 'dispatch' list")
        items = f.sequence(doc, "dispatch") or []
        if len(items) > MAX_DISPATCH_RULES:
            f.error(item_pos(items, MAX_DISPATCH_RULES), f"{len(items)} dispatch rules; at "
                    f"most {MAX_DISPATCH_RULES} are allowed")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                f.error(item_pos(items, i), f"a dispatch rule must be a mapping with 'url' "
                        f"and 'service', not {kind(item)}")
                continue
            rule = _read_dispatch_rule(f, item, node_pos(item) if item else item_pos(items, i))
            if rule is not None:
                rules.append(rule)
    sink.raise_if_any()
    return tuple(rules)


def _read_dispatch_rule(f: YamlFile, m: dict[Any, Any], pos: Pos) -> DispatchRule | None:
    f.check_keys(m, ("url", "service"), "a dispatch rule")
    url, service = f.string(m, "url"), f.service_id(m, "service")
    for key, value in (("url", url), ("service", service)):
        if value is None and m.get(key) is None:
            f.error(pos, f"dispatch rule has no {key!r}")
    if url is not None:
        reason = _dispatch_url_problem(url)
        if reason:
            f.error(value_pos(m, "url"), f"dispatch url {show(url)}: {reason}")
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
