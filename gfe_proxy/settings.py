"""Runtime settings of one gfe-proxy process: a frozen value built by the CLI.

Each option is also readable from an environment variable ``GFE_<NAME>`` (flags win); the
CLI does that mapping, this module only holds the values and parses sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gfe_proxy.headers import Geo

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


def parse_size(text: str) -> int:
    """``"256MB"`` -> 268435456. Binary units: ``MB`` and ``MiB`` both mean 1024² (as
    operators expect of a memory budget); a bare number is bytes."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (try 256MB, 64KiB or a byte count)")
    number, unit = float(m.group(1)), (m.group(2) or "").lower()
    letter = unit[:1] if unit[:1] in "kmgt" and unit else ""
    factor = 1024 ** ("kmgt".index(letter) + 1) if letter else 1
    return int(number * factor)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    apps: tuple[Path, ...] = ()  # app directories or yaml files; empty = bundled demo
    dispatch: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080  # 0 = an ephemeral port (printed at start)
    https_port: int = 8443  # 0 disables HTTPS
    admin_port: int = 8000  # 0 disables the admin listener
    cert: Path | None = None
    key: Path | None = None
    cache_size: int = 256 * 1024 * 1024  # bytes; 0 disables the edge cache
    compression: tuple[Literal["gzip", "br"], ...] = ("gzip",)  # production: gzip only
    log_format: Literal["text", "json"] = "text"
    reload: bool = False
    trust_forwarded_proto: bool = False
    request_timeout: float | None = None  # seconds; None = SPEC SCALE-4 defaults
    scale_down_delay: float = 900.0  # seconds; production ≈ 15 min (SPEC SCALE-1)
    pending_timeout: float = 10.0  # seconds; SPEC SCALE-3
    scaling_tick: float = 0.2  # seconds between autoscaler ticks (scaling.py: every 0.2–1 s)
    memory_interval: float = 2.0  # seconds between samples of instance memory (SPEC INST-3)
    reload_interval: float = 1.0  # seconds between --reload polls of the app files
    max_instances_cap: int = 20  # bound for automatic scaling without max_instances (local machine)
    start_timeout: float = 60.0  # seconds an instance may take to answer HTTP
    stop_grace: float = 5.0  # seconds between SIGTERM and SIGKILL
    project: str = "gfe-proxy-local"  # GOOGLE_CLOUD_PROJECT when app.yaml names no application
    geo: Geo = field(default_factory=Geo)
    cache_header: bool = True  # emit X-GFE-Cache (SPEC CACHE-6)
