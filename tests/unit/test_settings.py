from __future__ import annotations

import pytest

from gfe_proxy.settings import parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("256MB", 256 * 1024**2),
        ("0", 0),
        ("1024", 1024),
        ("64KiB", 64 * 1024),
        ("1.5g", 1536 * 1024**2),
    ],
)
def test_cache_size_parses_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "-1", "12 parsecs"])
def test_cache_size_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)
