"""The pure half never imports aiohttp or asyncio (STYLE 1): each module in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Policy and parsing modules: neither aiohttp nor asyncio.
PURE = [
    "accesslog", "appyaml", "caching", "compression", "config", "dispatchyaml", "durations",
    "errorpages", "errors", "headers", "launch", "login", "memory", "mimetable", "pool",
    "reload", "routing", "scaling", "services", "settings", "static", "tls", "wire",
    "yamlnodes",
]  # fmt: skip
# The cache store hands waiters an asyncio Event (request coalescing) but is no aiohttp glue.
NO_AIOHTTP = ["cache"]


def _imported(module: str) -> list[str]:
    code = (
        f"import sys, gfe_proxy.{module}; "
        "print(' '.join(m for m in ('aiohttp', 'asyncio') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_neither_aiohttp_nor_asyncio(module: str) -> None:
    assert _imported(module) == []


@pytest.mark.parametrize("module", NO_AIOHTTP)
def test_module_imports_no_aiohttp(module: str) -> None:
    assert "aiohttp" not in _imported(module)
