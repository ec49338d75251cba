"""Which service a request goes to (SPEC ROUTE-5). Pure.

Order: ``dispatch.yaml`` rules (first match wins, ``/_ah/`` exempt); else the Host header's
``-dot-`` or dotted form (``v1-dot-api-dot-app.localhost``, ``api.localhost``); else
``default``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from gfe_proxy.config import DispatchRule


@dataclass(frozen=True, slots=True)
class Target:
    service: str
    version: str | None = None
    instance: str | None = None  # manual-scaling instance targeting


def _rule_matches(rule: DispatchRule, host: str, path: str) -> bool:
    pattern = rule.url
    slash = pattern.find("/")
    host_pat, path_pat = (pattern, "/") if slash < 0 else (pattern[:slash], pattern[slash:])
    if host_pat not in ("", "*"):
        if host_pat.startswith("*"):
            if not host.endswith(host_pat[1:]):
                return False
        elif host != host_pat:
            return False
    if path_pat.endswith("*"):
        return path.startswith(path_pat[:-1])
    return path == path_pat


def select(
    host: str,
    path: str,
    services: Collection[str],
    rules: Sequence[DispatchRule] = (),
) -> Target:
    """The service (and version/instance labels) for ``host`` and ``path``.

    >>> select("api.localhost:8080", "/x", {"default", "api"}).service
    'api'
    """
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    hostname = hostname.lower()
    if rules and not path.startswith("/_ah/"):
        for rule in rules:
            if _rule_matches(rule, hostname, path) and rule.service in services:
                return Target(rule.service)
    if len(services) > 1 or "default" not in services:
        labels = hostname.split("-dot-")
        if len(labels) == 1:
            labels = hostname.split(".")
        # Rightmost-first is the app's own domain; look for a known service among the labels,
        # reading INSTANCE-dot-VERSION-dot-SERVICE from the left.
        for i, label in enumerate(labels[:-1]):
            if label in services:
                before = labels[:i]
                version = before[-1] if before else None
                instance = before[-2] if len(before) >= 2 else None
                return Target(label, version, instance)
    return Target("default" if "default" in services else next(iter(services)))
