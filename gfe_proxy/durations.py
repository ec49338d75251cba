"""app.yaml durations: ``"4d 5h"``, ``"30ms"``, ``"automatic"``, ``"10m"`` (SPEC CFG-3).

Pure functions from text to seconds. The accepted shapes are the ones App Engine's own
validator accepts, so an app.yaml that loads here also deploys:

- expirations (``expiration``, ``default_expiration``): whitespace-separated terms
  ``<integer><d|h|m|s>``, summed; a term without a unit is seconds;
- latencies (``min_pending_latency``, ``max_pending_latency``): ``<integer>ms``,
  ``<number>s`` (at most three decimals) or ``automatic``;
- ``idle_timeout`` (basic scaling): ``<integer>s`` or ``<integer>m``.

Every bad input raises ``ValueError`` with a message meant for a person.
"""

from __future__ import annotations

import re

__all__ = ["parse_expiration", "parse_idle_timeout", "parse_latency"]

# Longer numbers are certainly typos; the bound also keeps int()/float() conversions safe.
_MAX_DIGITS = 12

_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "": 1}
_EXPIRATION_TERM = re.compile(r"(\d+)([dhms]?)", re.IGNORECASE | re.ASCII)
_LATENCY = re.compile(r"(?:(\d+)ms|(\d+(?:\.\d{1,3})?)s)", re.ASCII)
_IDLE_TIMEOUT = re.compile(r"(\d+)([sm])", re.ASCII)


def _show(text: str) -> str:
    """Quote a user value for a message, shortened so a huge value stays readable."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _digits(number: str, text: str) -> int:
    if len(number) > _MAX_DIGITS:
        raise ValueError(f"duration {_show(text)} is too large")
    return int(number)


def parse_expiration(text: str) -> float:
    """Seconds in an expiration such as ``"4d 5h"`` (= 363600.0); ``"90"`` is 90 seconds."""
    terms = text.split()
    if not terms:
        raise ValueError("expiration is empty; expected terms like '4d 5h' (d, h, m or s)")
    total = 0
    for term in terms:
        match = _EXPIRATION_TERM.fullmatch(term)
        if match is None:
            raise ValueError(
                f"invalid expiration {_show(text)}: term {_show(term)} is not "
                "<integer><d|h|m|s>; expected something like '4d 5h' or '30m'"
            )
        total += _digits(match[1], text) * _UNIT_SECONDS[match[2].lower()]
    return float(total)


def parse_latency(text: str) -> float | None:
    """Seconds in a pending latency (``"30ms"`` = 0.03, ``"1.5s"``); ``"automatic"`` is None."""
    stripped = text.strip()
    if stripped == "automatic":
        return None
    match = _LATENCY.fullmatch(stripped)
    if match is None:
        raise ValueError(
            f"invalid latency {_show(text)}; expected '<n>ms', '<n>s' or 'automatic'"
        )
    if match[1] is not None:
        return _digits(match[1], text) / 1000.0
    seconds = match[2]
    _digits(seconds.split(".")[0], text)
    return float(seconds)


def parse_idle_timeout(text: str) -> float:
    """Seconds in a basic-scaling ``idle_timeout`` (``"10m"`` = 600.0, ``"45s"``)."""
    match = _IDLE_TIMEOUT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid idle_timeout {_show(text)}; expected '<n>s' or '<n>m'")
    return float(_digits(match[1], text) * _UNIT_SECONDS[match[2]])
