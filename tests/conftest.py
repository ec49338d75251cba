"""Fixtures shared by the test tiers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.proxyproc import RunningProxy, start_proxy


@pytest.fixture(scope="module")
def proxy_factory() -> Iterator[Callable[..., RunningProxy]]:
    started: list[RunningProxy] = []

    def factory(*args: str, **kw: object) -> RunningProxy:
        p = start_proxy(*args, **kw)  # type: ignore[arg-type]
        started.append(p)
        return p

    yield factory
    for p in started:
        p.stop()
