"""SPEC ROUTE-5: which service a request goes to."""

from __future__ import annotations

import pytest

from gfe_proxy.config import DispatchRule
from gfe_proxy.services import Target, select

SERVICES = {"default", "api", "worker"}


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost:8080", Target("default")),
        ("api.localhost:8080", Target("api")),
        ("api-dot-myapp.localhost", Target("api")),
        ("v1-dot-api-dot-myapp.localhost", Target("api", "v1")),
        ("i3-dot-v1-dot-worker-dot-myapp.localhost", Target("worker", "v1", "i3")),
        ("unknown.localhost", Target("default")),
        ("127.0.0.1:8080", Target("default")),
    ],
    ids=["plain", "dotted", "dash-dot", "version", "instance", "unknown", "ip"],
)
def test_route_5_host_selects_service(host: str, expected: Target) -> None:
    assert select(host, "/", SERVICES) == expected


RULES = (
    DispatchRule(url="*/api/*", service="api"),
    DispatchRule(url="jobs.example.com/*", service="worker"),
)


@pytest.mark.parametrize(
    ("host", "path", "service"),
    [
        ("localhost", "/api/users", "api"),
        ("localhost", "/apix", "default"),
        ("jobs.example.com", "/run", "worker"),
        ("localhost", "/_ah/warmup", "default"),
    ],
    ids=["path-suffix", "no-match", "host", "ah-exempt"],
)
def test_route_5_dispatch_rules_first_match_wins(host: str, path: str, service: str) -> None:
    assert select(host, path, SERVICES, RULES).service == service


def test_route_5_single_service_without_default_name() -> None:
    assert select("localhost", "/", {"api"}).service == "api"
